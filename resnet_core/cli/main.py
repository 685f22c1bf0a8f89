"""Command line: ``python -m resnet_core {train,describe,evaluate,estimate,runs,reproduce,analyze,attribute}``.

One module per subcommand in this package, each with ``add_parser(subparsers)`` (which sets
``subcommand`` to its ``run``) and ``run(args) -> exit status``. Every invalid value exits with status 2 and one line on
stderr that says what is valid; results go to stdout as one JSON object on the last line, progress to
stderr.
"""
from __future__ import annotations

import argparse
import importlib

from resnet_core.cli.common import OneLineParser, UsageError, one_line_errors
from resnet_core.config import ConfigError

SUBCOMMANDS = ("train", "describe", "evaluate", "estimate", "runs", "reproduce", "analyze", "attribute")
OPTIONAL = {"attribute": "captum"}   # attribution needs captum; the rest of the CLI works without it


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m resnet_core", description="Train and analyse plain and residual CIFAR nets.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"resnet_core.cli.{name}")
            module.add_parser(sub)
        except ModuleNotFoundError as e:
            if e.name != OPTIONAL.get(name):
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    from resnet_core.data import DataError
    from resnet_core.memory import keep_freed_memory
    from resnet_core.nets.checkpoints import CheckpointError

    keep_freed_memory()

    def work() -> int:
        args = build_parser().parse_args(argv)
        return args.subcommand(args)

    return one_line_errors(work, (UsageError, ConfigError, DataError, CheckpointError, FileNotFoundError,
                                  ValueError))

"""``python -m resnet_core reproduce PRESET``: a paper's experiment from the command line.

Runs the same preset definitions as the dashboard (resnet_core/experiments/presets.py) through
``resnet_core.experiments.reproduce.reproduce``: every run into the run store under one group, a tqdm bar per run
on stderr, the figure as PNG and HTML into ``--out``, and as the last stdout line one JSON object:
``preset``, ``scale``, ``seconds``, ``runs`` (label, arch, depth, seed, steps, final_train_error,
final_test_error as fractions, ...), ``verdict`` (each separation per seed, and whether it holds).
"""
from __future__ import annotations

import argparse
import json
import sys

EXAMPLE = "python -m resnet_core reproduce fig6 --scale quick --seeds 3 --out figures"


def add_parser(subparsers) -> argparse.ArgumentParser:
    from resnet_core.experiments.presets import PRESETS
    from resnet_core.experiments.scales import SCALES

    keys = ", ".join(f"{k} ({p.title})" for k, p in PRESETS.items())
    p = subparsers.add_parser("reproduce", help="run one of the papers' experiments and judge it",
                              description=f"Presets: {keys}. Example: {EXAMPLE}")
    p.add_argument("preset", choices=list(PRESETS), help="which experiment")
    p.add_argument("--scale", choices=SCALES, default=None,
                   help="quick (minutes on a CPU) or paper (the paper's setting); default: paper on a CUDA GPU, "
                        "else quick")
    p.add_argument("--dataset", default=None,
                   help="synthetic (embedded shapes), cifar10, or folder:PATH (default: the scale's data set)")
    p.add_argument("--data-dir", default=None, help="cifar10: directory holding cifar-10-batches-py")
    p.add_argument("--no-download", action="store_true", help="cifar10: never download")
    p.add_argument("--seeds", type=int, default=1, help="repeat the preset with seeds 0..N-1")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--runs-dir", default=None, help="run store directory (default: $RESNET_LAB_RUNS or runs/)")
    p.add_argument("--out", default="figures", help="directory for the figure (PNG and HTML)")
    p.add_argument("--steps", type=int, default=None, help="override every run's steps (for a quick check)")
    p.add_argument("--parallel", type=int, default=None,
                   help="runs trained at once, a core each on a CPU (default: $RESNET_LAB_MAX_RUNS or 2, as the "
                        "dashboard; 1: one after another)")
    p.add_argument("--n-train", type=int, default=None, help="synthetic: training images (default 10000)")
    p.add_argument("--n-test", type=int, default=None, help="synthetic: test images (default 2000)")
    p.add_argument("--gpus", default=None,
                   help="GPU numbers, e.g. 0,1,2,3: the runs at once, one process per GPU (the rest queued), "
                        "all into one run store (resnet_core/training/distributed.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(subcommand=run)
    return p


def _dataset(args):
    from resnet_core.cli.common import dataset_name_and_path
    from resnet_core.config import DataConfig

    sizes = {k: v for k, v in (("n_train", args.n_train), ("n_test", args.n_test)) if v is not None}
    if args.dataset is None:
        if args.data_dir is not None:
            return DataConfig(name="cifar10", path=args.data_dir, download=not args.no_download)
        return DataConfig(**sizes) if sizes else None   # None: the scale's own choice
    name, path = dataset_name_and_path(args.dataset, args.data_dir)
    return DataConfig(name=name, path=path, download=not args.no_download, **sizes)


def _gpus(args) -> list[str] | None:
    from resnet_core.training.distributed import parse_gpus

    return parse_gpus(args.gpus) if args.gpus is not None else None


def run(args) -> int:
    from resnet_core.config import ConfigError
    from resnet_core.experiments.scales import default_scale
    from resnet_core.experiments.costmodel import runs_at_once
    from resnet_core.cli.progress import RunProgress
    from resnet_core.experiments.reproduce import reproduce
    from resnet_core.device import resolve_device

    if not 1 <= args.seeds <= 100:
        raise ConfigError(f"--seeds must be from 1 to 100; got {args.seeds}")
    if args.parallel is not None and not 1 <= args.parallel <= 16:
        raise ConfigError(f"--parallel must be from 1 to 16; got {args.parallel}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be a positive integer; got {args.steps}")
    resolve_device(args.device)  # an absent GPU is refused before any data is loaded
    scale = args.scale or default_scale(args.device)

    def progress(cfg, i, total):
        return RunProgress(not args.quiet, desc=f"[{i + 1}/{total}] {cfg.label} seed {cfg.train.seed}",
                           announce=False)

    result = reproduce(args.preset, scale, dataset=_dataset(args), seeds=args.seeds, device=args.device,
                       runs_dir=args.runs_dir, out=args.out, steps=args.steps,
                       parallel=args.parallel or runs_at_once(),
                       progress=progress, gpus=_gpus(args))
    print(json.dumps(result))
    if result.get("figures", {}).get("skipped"):
        print(f"figure left out: {result['figures']['skipped']}", file=sys.stderr)
    failed = [r for r in result["runs"] if r["status"] not in ("finished", "stopped")]
    return 1 if failed else 0

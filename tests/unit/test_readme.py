"""README.md's commands against the code: every ``python -m resnet_core ...`` line it shows must be one the
CLI's parser accepts, and every ``make`` target it names must exist in the Makefile. Catches a flag renamed
or removed in the CLI while the README still teaches it, and a README line mistyped."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from resnet_core.cli.common import UsageError
from resnet_core.cli.main import SUBCOMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROGRAM = "python -m resnet_core"
SHELL_ENDS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&"}   # what follows belongs to the shell


def _code_spans(text: str) -> list[str]:
    """The lines of every fenced block (backslash continuations joined) and every inline code span
    (which markdown lets run over a line break), in README order."""
    spans: list[str] = []
    fenced = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)   # also inside list items
    for block in fenced.findall(text):
        spans += re.sub(r"\\\n\s*", " ", block).splitlines()
    for inline in re.findall(r"`([^`]+)`", fenced.sub("", text)):
        spans.append(" ".join(inline.split()))
    return spans


def _commands(text: str) -> list[str]:
    """Each ``python -m resnet_core`` command (its arguments, without any ``.venv/bin/``, ``$ `` or
    ``VAR=value`` in front, and without a trailing comment or what a pipe or redirection adds)."""
    found = []
    for span in _code_spans(text):
        for part in span.split(PROGRAM)[1:]:
            words = []
            for word in shlex.split(part, comments=True):
                if word in SHELL_ENDS:
                    break
                words.append(word)
            found.append(" ".join(shlex.quote(w) for w in words))
    return found


COMMANDS = _commands(README)
# Inline mentions of a subcommand by name in prose, not commands to run: checked to name a subcommand,
# not parsed (they lack the arguments a run needs). "They are the definitions `python -m resnet_core
# reproduce` runs": reproduce needs a preset, which the sentence is about.
MENTIONS = {"reproduce"}


def test_the_readme_shows_commands_of_every_subcommand():
    """The extraction itself: a regex that stops matching would otherwise pass every check below."""
    assert len(COMMANDS) >= 25
    used = {shlex.split(c)[0] for c in COMMANDS if c}
    assert used >= {"train", "describe", "evaluate", "runs", "estimate", "reproduce", "analyze", "attribute"}


@pytest.mark.parametrize("command", COMMANDS)
def test_the_cli_parser_accepts_every_readme_command(command):
    """Placeholders the README uses (RUN_ID, RUN.json, cat.jpg, path/to/run) are plain strings to the
    parser, so none needs skipping: files are opened by the subcommand, after parsing."""
    if command in MENTIONS:
        assert command in SUBCOMMANDS
        return
    try:
        build_parser().parse_args(shlex.split(command))
    except (UsageError, SystemExit) as e:
        pytest.fail(f"README.md: `{PROGRAM} {command}` is refused by the CLI: {e}")


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = {m for span in _code_spans(README) for m in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", span)}
    assert named >= {"run", "test"}   # the extraction found the README's first two lines
    assert named <= targets, f"README.md names make targets the Makefile lacks: {sorted(named - targets)}"

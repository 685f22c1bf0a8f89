"""The CPU allocator setting (resnet_core.memory.keep_freed_memory): taken where it is available, off on
request, and set by every entry point that runs the work (the CLI, the dashboard's training processes)."""
import ctypes
import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_core import memory

ROOT = Path(__file__).resolve().parents[2]


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc(), reason="mallopt is glibc's (Linux)")
def test_it_is_taken_with_glibc_and_left_alone_on_request(monkeypatch):
    assert memory.keep_freed_memory() is True
    monkeypatch.setenv("RESNET_LAB_MALLOC", "default")
    assert memory.keep_freed_memory() is False


def test_the_cli_sets_it_before_any_subcommand_runs(monkeypatch, capsys):
    from resnet_core.cli import main as cli

    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["describe", "--depth", "8"]) == 0
    assert calls == [1]


def test_the_training_process_sets_it_before_the_memory_cap():
    """The dashboard's training process: keep_freed_memory is called in main(), before _limit_memory (the
    cap counts what is mapped by then). Read from the source's order, as the process only starts under
    the dashboard's pool."""
    src = (ROOT / "dashboard" / "run_process.py").read_text()
    body = src[src.index("def main()"):]
    assert "keep_freed_memory()" in body and body.index("keep_freed_memory()") < body.index("_limit_memory()")
    out = subprocess.run([sys.executable, "-c", "import dashboard.run_process as r; print(callable(r.main))"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr

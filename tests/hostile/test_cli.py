"""Item 9: each command-line case of the issue gets one clear line on stderr and a non-zero exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import store_tiny_run

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, runs: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESNET_LAB_RUNS": str(runs)}
    return subprocess.run([sys.executable, "-m", "resnet_core", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_line_refusal(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode != 0, r.stdout[-500:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-800:]
    for w in words:
        assert w in lines[0], lines[0]


TINY = ["--depth", "8", "--width", "0.25", "--n-train", "10", "--n-test", "10", "--batch-size", "4",
        "--device", "cpu"]


@pytest.mark.parametrize("args,words", [
    (["--epochs", "inf"], ["epochs"]),
    (["--weight-decay", "nan"], ["weight decay"]),
    (["--seed", str(10**23), "--steps", "1"], ["seed"]),
    (["--steps", "1", "--depth", "1202", "--width", "16"], ["needs about", "budget"]),
], ids=["epochs-inf", "weight-decay-nan", "seed-huge", "memory"])
def test_train_refuses_values_that_would_fail_later(args, words, tmp_path):
    runs = tmp_path / "runs"
    r = cli("train", *TINY, *args, runs=runs)
    one_line_refusal(r, *words)
    assert not runs.exists() or not list(runs.iterdir())  # refused before a run directory was made


def test_evaluate_refuses_a_negative_limit(tmp_path):
    runs = tmp_path / "runs"
    run_id = store_tiny_run(runs, "tiny", "tiny")
    ckpt = runs / run_id / "checkpoints" / "last.pt"
    r = cli("evaluate", "--checkpoint", str(ckpt), "--dataset", "synthetic", "--n-test", "20", "--limit", "-5",
            "--device", "cpu", runs=runs)
    one_line_refusal(r, "limit")


def test_a_fifo_for_image_or_checkpoint_is_refused_not_waited_on(tmp_path):
    runs = tmp_path / "runs"
    run_id = store_tiny_run(runs, "tiny", "tiny")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    r = cli("attribute", "--image", str(fifo), "--model", f"run:{run_id}", "--method", "saliency", runs=runs,
            timeout=60)
    one_line_refusal(r, "not a regular file")
    r = cli("evaluate", "--checkpoint", str(fifo), "--dataset", "synthetic", "--n-test", "20", runs=runs,
            timeout=60)
    one_line_refusal(r, "not a regular file")


def test_analyze_estimate_reads_the_run_from_runs_dir(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    run_id = store_tiny_run(elsewhere, "tiny", "tiny")
    r = cli("analyze", "lesion", "--run", run_id, "--runs-dir", str(elsewhere), "--estimate", "--device", "cpu",
            runs=tmp_path / "default-runs")
    assert r.returncode == 0, r.stderr[-800:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["seconds"] > 0

"""bench/gpu_throughput.py stays runnable where there is no GPU: a clean refusal, and a tiny CPU
smoke run through every path it measures on a GPU (eager steps, the four Fig. 6 runs at once)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

BENCH = str(ROOT / "bench" / "gpu_throughput.py")


def bench(*args):
    return subprocess.run(["timeout", "300", sys.executable, BENCH, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the benchmark would run")
def test_without_cuda_it_refuses_in_one_line():
    p = bench()
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: no CUDA GPU")


def test_tiny_cpu_smoke_run_covers_the_throughput_table_and_the_preset():
    p = bench("--device", "cpu", "--tiny", "--no-compile")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("resnet-8 ")]
    assert [(r[1], r[2]) for r in rows] == [("16", "eager"), ("32", "eager")]
    assert all(float(r[3]) > 0 for r in rows)
    finished = [ln for ln in p.stdout.splitlines() if " finished " in ln]
    assert len(finished) == 4 and "wall time" in p.stdout

"""Shared pieces of the hostile suite: what a careless or hostile user of a shared server can do, each case
tiny, and anything that could allocate much run in a child process under a memory limit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The child imports torch and the project first (their code mappings take a few GB of address space),
# then may allocate at most `limit_mb` more: an attempt beyond raises MemoryError/RuntimeError there.
_PRELUDE = """
import os, resource, sys
import torch
import resnet_core, resnet_core.nets.checkpoints, resnet_core.training.loop, resnet_core.training.runs
def _vm():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
limit = _vm() + {limit} * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""


def run_limited(code: str, limit_mb: int = 1024, timeout: float = 180, env: dict | None = None):
    """Runs ``code`` in a child Python under a memory limit; returns the CompletedProcess."""
    full = _PRELUDE.format(limit=int(limit_mb)) + textwrap.dedent(code)
    child_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "MKL_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", full], cwd=ROOT, env=child_env, capture_output=True, text=True,
                          timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])

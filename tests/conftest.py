import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must not fight over the 2 cores with oversubscribed thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def shared_weight(depth: int) -> Path:
    hits = sorted(WEIGHTS.glob(f"resnet{depth}-*.th")) if WEIGHTS.is_dir() else []
    if not hits:
        pytest.skip(f"../shared/weights/resnet{depth}-*.th not present")
    return hits[0]


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("RESNET_LAB_RUNS", str(d))
    return d

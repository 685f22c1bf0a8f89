import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must not fight over the 2 cores with oversubscribed thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Durations: no test may time this machine in the background or read the user's cached calibration;
# tests that need one write a known one (``calibrated``).
os.environ["RESNET_LAB_CALIBRATE"] = "0"
os.environ["RESNET_LAB_CACHE"] = tempfile.mkdtemp(prefix="resnet-lab-test-cache-")


@pytest.fixture
def calibrated():
    """A known calibration of 'this machine' in the test cache: 1 ms + 0.1 ms per layer + 50 ms per
    GMAC a step on one thread, and 30 ms per GMAC on all cores."""
    import json

    from resnet_core.experiments import costmodel
    cal = costmodel.Calibration(costmodel.machine_info("cpu"), "cpu", {1: (0.001, 0.0001, 0.05),
                                                                       2: (0.001, 0.0001, 0.03)},
                                0.5, [{"label": "resnet-8", "threads": 1, "step_s": 0.1}], 1.8e9)
    path = costmodel.cache_path("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cal.to_dict()))
    yield cal
    path.unlink(missing_ok=True)


def shared_weight(depth: int) -> Path:
    """The community ResNet-``depth`` file, for the tests that pin those very checkpoints (their keys,
    their published predictions); every other test trains or builds what it needs."""
    hits = sorted(WEIGHTS.glob(f"resnet{depth}-*.th")) if WEIGHTS.is_dir() else []
    if not hits:
        pytest.skip(f"pins the community ResNet-{depth} checkpoint, kept in ../shared/weights beside the checkout "
                    "for the team's tests only; absent here")
    return hits[0]


@pytest.fixture(scope="session")
def trained_shapes(tmp_path_factory):
    """A ResNet-8 trained here on the shapes at 32x32 (the default Start's net, without augmentation),
    300 steps on one core: well above chance (the attribution checks need a model that has learned
    something; at 16x16 the objects fill the image and a random deletion order scores as well as any
    attribution). Stored as a finished run: ``.runs_dir``, ``.run_id``,
    ``.checkpoint`` (last.pt), ``.data`` (its DataConfig), ``.loaded`` (checkpoints.LoadedModel)."""
    from types import SimpleNamespace

    import torch

    from resnet_core.nets.checkpoints import load_checkpoint
    from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from resnet_core.training.runs import RunStore, execute_run

    runs_dir = tmp_path_factory.mktemp("trained") / "runs"
    data = DataConfig(augment=False, n_train=4000, n_test=200)
    cfg = RunConfig(model=ModelConfig(depth=8), data=data, name="trained-shapes",
                    train=TrainConfig(steps=300, batch_size=64, lr=0.1, warmup_steps=30, schedule="constant",
                                      eval_every=0, log_every=50, feature_maps_every=0, device="cpu", seed=0))
    writer = RunStore(runs_dir).create(cfg, status="queued", run_id="trained-shapes")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # small steps: one core does them about as fast, and never oversubscribes
    try:
        result = execute_run(writer)
    finally:
        torch.set_num_threads(threads)
    assert result is not None and result.status == "finished", "the shared trained model did not train"
    ckpt = runs_dir / "trained-shapes" / "checkpoints" / "last.pt"
    return SimpleNamespace(runs_dir=runs_dir, run_id="trained-shapes", checkpoint=ckpt, data=data,
                           loaded=load_checkpoint(ckpt), test_acc=result.test_acc)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("RESNET_LAB_RUNS", str(d))
    return d


def write_cifar_dir(root: Path, n_train_per_batch: int = 4, n_test: int = 20, seed: int = 0) -> Path:
    """A small cifar-10-batches-py directory in the real format (pickled dicts, uint8 rows of 3072)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)

    def dump(name, n):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{i}.png".encode() for i in range(n)]}, f)

    for i in range(1, 6):
        dump(f"data_batch_{i}", n_train_per_batch)
    dump("test_batch", n_test)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": n_train_per_batch, b"num_vis": 3072}, f)
    return root


def store_tiny_run(runs_dir: Path, run_id: str, name: str) -> str:
    """A finished run holding a random depth-8 checkpoint, written through the run store itself."""
    import torch

    from resnet_core.nets.checkpoints import save_checkpoint
    from resnet_core.config import ModelConfig, RunConfig, TrainConfig
    from resnet_core.data import SHAPE_CLASSES
    from resnet_core.nets.models import build_model
    from resnet_core.training.runs import RunStore

    cfg = RunConfig(model=ModelConfig(depth=8), train=TrainConfig(steps=1), name=name)
    writer = RunStore(runs_dir).create(cfg, status="finished", run_id=run_id)
    torch.manual_seed(0)
    save_checkpoint(writer.path / "checkpoints" / "last.pt", build_model(cfg.model), cfg.to_dict(), step=1,
                    classes=list(SHAPE_CLASSES), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    writer.close()
    return writer.run_id

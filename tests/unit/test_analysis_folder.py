"""An analysis pointed at a folder of images scores every image in it, not the 20% a training run holds out."""
import numpy as np
import pytest
import torch

from resnet_core.analysis import ModelSource, run_analysis
from resnet_core.config import DataConfig, ModelConfig
from resnet_core.data import SHAPE_CLASSES
from tests.conftest import store_tiny_run

PER_CLASS = 3   # 30 images; the training split would keep round(0.2 x 3) = 1 per class, 10, for testing


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in SHAPE_CLASSES:
        (root / name).mkdir()
        for i in range(PER_CLASS):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return DataConfig(name="folder", path=str(root), image_size=16)


WHOLE = PER_CLASS * len(SHAPE_CLASSES)
CONFIG = ModelSource(config=ModelConfig(depth=8))


@pytest.mark.parametrize("name, settings, count", [
    ("gradient-flow", {"batch_size": 100, "twin": False, "plus_one": False}, lambda r: r["batch_size"]),
    ("shattering", {"points": 4, "max_lag": 1, "twin": False, "calibration_images": 100},
     lambda r: r["calibration_images_used"]),
    ("paths", {"batch_size": 100, "draws": 1, "batches": 1, "lengths": [0, 1]}, lambda r: r["batch_size"]),
])
def test_analyses_at_initialisation_use_the_whole_folder(folder, name, settings, count):
    r = run_analysis(name, CONFIG, data=folder, settings=settings, use_cache=False)
    assert count(r) == WHOLE


@pytest.mark.parametrize("name, settings", [
    ("lesion", {"images": 1000, "draws": 1, "swaps": [1], "counts": [1]}),
    ("landscape", {"points": 2, "images": 1000, "method": "loop"}),
    ("interpolate", {"points": 2, "images": 1000}),
])
def test_analyses_of_a_trained_net_use_the_whole_folder(folder, runs_dir, name, settings):
    from resnet_core.nets.checkpoints import load_checkpoint, save_checkpoint

    run_id = store_tiny_run(runs_dir, f"folder-{name}", "tiny")
    ckpts = runs_dir / run_id / "checkpoints"
    loaded = load_checkpoint(ckpts / "last.pt")
    save_checkpoint(ckpts / "init.pt", loaded.model, {"model": loaded.model_cfg.to_dict()}, step=0,
                    classes=loaded.classes, mean=loaded.mean, std=loaded.std)
    r = run_analysis(name, ModelSource(run_id=run_id), data=folder, runs_dir=runs_dir, settings=settings,
                     use_cache=False)
    assert r["images"] == WHOLE

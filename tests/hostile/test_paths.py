"""Item 4: paths typed in a browser stay inside the server's data roots, with one message whether or
not a path exists; only regular files are opened (a FIFO never hangs a page or the CLI); folder
images pass the uploads' format allow-list. Item 5: folder training takes the folder's classes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard.worker import RunManager
from resnet_core.nets.checkpoints import CheckpointError, load_checkpoint
from resnet_core.data import load_folder
from resnet_core.data.images import ImageError, load_image

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "pages" / "train.py")
ATTRIBUTION = str(ROOT / "pages" / "attribution.py")


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A data root (tmp/data) and the run store; everything else on the machine is outside."""
    runs, data = tmp_path / "runs", tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("RESNET_LAB_RUNS", str(runs))
    monkeypatch.setenv("RESNET_LAB_DATA_ROOTS", f"{data}{os.pathsep}{runs}")
    yield data
    RunManager.shared(runs).shutdown(timeout=60)


def class_tree(root: Path, classes: int, per_class: int = 4, side: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for k in range(classes):
        d = root / f"class{k}"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def _sidebar_errors(at) -> list[str]:
    return [e.value for e in at.sidebar.error]


def test_a_folder_outside_the_roots_gets_one_message_whether_or_not_it_exists(server, tmp_path):
    private = class_tree(tmp_path / "private", 10)  # exists, readable, a valid 10-class tree
    messages = []
    for path in (str(private), str(tmp_path / "nonexistent"), str(server / ".." / "private"), "/etc"):
        at = AppTest.from_file(TRAIN, default_timeout=60).run()
        at.selectbox(key="data_name").set_value("folder").run()
        at.text_input(key="data_path").input(path).run()
        assert not at.exception and at.button(key="start").disabled
        errors = _sidebar_errors(at)
        assert len(errors) == 1, errors
        messages.append(errors[0])
        assert "class0" not in " ".join(c.value for c in at.sidebar.caption)  # no sub-folder names shown
    assert len(set(messages)) == 1 and "not one this server opens" in messages[0]


def test_a_folder_with_two_classes_trains_from_the_page_with_two_classes(server):
    class_tree(server / "two", 2)
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.selectbox(key="data_name").set_value("folder").run()
    at.text_input(key="data_path").input(str(server / "two"))
    at.selectbox(key="depth_basic").set_value(8)
    at.number_input(key="steps").set_value(3)
    at.select_slider(key="batch_size").set_value(16)
    at.select_slider(key="image_size").set_value(8)
    at.selectbox(key="device").set_value("cpu").run()
    assert not at.exception and not _sidebar_errors(at), _sidebar_errors(at)
    at.button(key="start").click().run()
    (run_id,) = at.session_state["shown_runs"]
    manager = RunManager.shared(Path(os.environ["RESNET_LAB_RUNS"]))
    assert manager.wait([run_id], timeout=180)
    info = manager.store.get(run_id)
    assert info.status == "finished", info.error
    assert info.config["model"]["num_classes"] == 2


def test_a_checkpoint_path_outside_the_roots_is_refused_alike_on_the_attribution_page(server, tmp_path):
    secret = tmp_path / "secret.th"
    secret.write_bytes(b"x" * 100)
    messages = []
    for path in (str(secret), str(tmp_path / "missing.th"), "/etc/passwd"):
        at = AppTest.from_file(ATTRIBUTION, default_timeout=60).run()
        at.text_input(key="attr_ckpt_path").input(path).run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1, errors
        messages.append(errors[0])
        assert not any(o.startswith("ckpt:") for o in at.multiselect(key="attr_models").options)
    assert len(set(messages)) == 1 and "not one this server opens" in messages[0]
    # The command line, run by the machine's own user, keeps accepting any path.
    from resnet_core.nets.checkpoints import save_checkpoint
    from resnet_core.config import ModelConfig
    from resnet_core.nets.models import build_model

    outside = tmp_path / "anywhere" / "m.pt"
    save_checkpoint(outside, build_model(ModelConfig(depth=8)), {"model": {"depth": 8}}, step=0,
                    classes=[str(i) for i in range(10)], mean=(0.5,) * 3, std=(0.25,) * 3)
    assert load_checkpoint(outside).model_cfg.depth == 8


def _in_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)


def test_a_fifo_is_refused_not_waited_on(server):
    fifo = server / "model.th"
    os.mkfifo(fifo)
    # In a child with a timeout: on failure the reader blocks forever, which must not hang the suite.
    r = _in_child(f"""
from resnet_core.nets.checkpoints import CheckpointError, load_checkpoint
from resnet_core.data.images import ImageError, load_image
for load, err in ((load_checkpoint, CheckpointError), (load_image, ImageError)):
    try:
        load({str(fifo)!r})
    except err as e:
        print(type(e).__name__, e)
""")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all("not a regular file" in line for line in lines), r.stdout + r.stderr
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(server)
    with pytest.raises(ImageError, match="is a directory"):
        load_image(server)


def test_folder_images_pass_the_uploads_format_allow_list(tmp_path):
    root = class_tree(tmp_path / "set", 2)
    # A TGA file named .png: Pillow would open it with its TGA plugin; the allow-list does not.
    Image.new("RGB", (12, 12), (255, 0, 0)).save(root / "class0" / "sneaky.png", format="TGA")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = load_folder(root, size=8)
    assert len(ds.train_y) + len(ds.test_y) == 8

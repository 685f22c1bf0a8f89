import io
import pickle

import pytest
import torch

from resnet_core.nets.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from resnet_core.config import ModelConfig
from resnet_core.nets.models import build_model
from tests.conftest import shared_weight


def _fixed_input():
    # Deterministic without any RNG: smooth colour ramps, on a 0..1 scale.
    g = torch.linspace(0, 1, 32)
    img = torch.stack([g[None, :].expand(32, 32), g[:, None].expand(32, 32), (g[None, :] * g[:, None])])
    return img[None]  # (1, 3, 32, 32)


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_community_checkpoints_load_strictly_with_inferred_architecture(depth):
    loaded = load_checkpoint(shared_weight(depth))
    assert loaded.model_cfg == ModelConfig(depth=depth)
    assert loaded.mean == (0.485, 0.456, 0.406) and loaded.classes[0] == "airplane"
    assert loaded.meta["best_prec1"] > 90


def test_resnet20_predictions_are_stable():
    loaded = load_checkpoint(shared_weight(20))
    x = (_fixed_input() - torch.tensor(loaded.mean).view(1, 3, 1, 1)) / torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = loaded.model(x).softmax(1)[0]
    # Regression values recorded from this loader; a key-mapping or padding bug changes them.
    top = probs.argsort(descending=True)[:3].tolist()
    assert top == EXPECTED_TOP3
    assert probs[top[0]].item() == pytest.approx(EXPECTED_P0, abs=1e-4)


EXPECTED_TOP3 = [3, 5, 0]  # cat, dog, airplane
EXPECTED_P0 = 0.558706


def test_our_checkpoint_round_trips_with_its_config(tmp_path):
    cfg = ModelConfig(depth=14, residual=False, shortcut="B", preact=True)
    model = build_model(cfg)
    p = save_checkpoint(tmp_path / "c.pt", model, {"model": cfg.to_dict()}, step=3, classes=list("abcdefghij"),
                        mean=(0.5,) * 3, std=(0.25,) * 3)
    loaded = load_checkpoint(p)
    assert loaded.model_cfg == cfg and loaded.classes == list("abcdefghij") and loaded.std == (0.25,) * 3
    for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)
    assert load_checkpoint(p.read_bytes()).model_cfg == cfg  # an upload arrives as bytes


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/resnet_lab_pwned",))


def test_code_carrying_pickle_is_refused_and_not_run(tmp_path):
    import os
    marker = "/tmp/resnet_lab_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    buf = io.BytesIO()
    torch.save({"state_dict": _Evil()}, buf)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(buf.getvalue())
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not os.path.exists(marker)


def test_non_checkpoints_and_misfits_get_clear_messages(tmp_path):
    (tmp_path / "t.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": build_model(ModelConfig(depth=20)).state_dict()}, tmp_path / "r20.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "r20.pt", model_cfg=ModelConfig(depth=20, width=2))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(tmp_path / "list.pt")

"""ImageNet loading without a network: the offline message, the cached-file path, attribution safety."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn as nn
from torchvision.models import resnet18, resnet50

from resnet_core.nets import imagenet
from resnet_core.nets.imagenet import ModelError, cache_path, load_imagenet, make_attribution_safe


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_offline_message_names_file_url_and_path(hub_dir, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(imagenet.urllib.request, "urlopen", offline)
    with pytest.raises(ModelError) as e:
        load_imagenet("resnet18")
    msg = str(e.value)
    expected = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    assert "resnet18-f37072fd.pth" in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert str(expected) in msg
    assert "\n" not in msg


def test_unknown_arch():
    with pytest.raises(ModelError, match="resnet18, resnet34, resnet50"):
        load_imagenet("resnet101")


def test_loads_cached_file_with_safe_loader(hub_dir, monkeypatch):
    monkeypatch.setattr(imagenet.urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    torch.manual_seed(0)
    ref = resnet18(weights=None).eval()
    path = cache_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    loaded = load_imagenet("resnet18")
    assert loaded.input_size == 224 and len(loaded.classes) == 1000
    assert loaded.classes[0] == "tench"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), ref(x))
    assert [f.name for f in loaded.model.feature_info][-1] == "layer4.1"


def test_code_carrying_cache_file_refused(hub_dir, tmp_path):
    path = cache_path("resnet18")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"x": _Evil(str(marker))}, path)
    with pytest.raises(ModelError, match="not a usable weights file"):
        load_imagenet("resnet18")
    assert not marker.exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("build", [resnet18, resnet50])
def test_attribution_safe_blocks_same_outputs_distinct_relus(build):
    torch.manual_seed(0)
    model = build(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        make_attribution_safe(model)
        after = model(x)
    torch.testing.assert_close(before, after)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert all(not r.inplace for r in relus)
    # One module per use: every ReLU fires exactly once per forward.
    calls = {}
    hooks = [r.register_forward_hook(lambda m, a, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1)) for r in relus]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert len(calls) == len(relus) and set(calls.values()) == {1}

"""ImageNet loading without a network: the offline message, the cached-file path, attribution safety."""
from __future__ import annotations

import hashlib
import io
import types
import urllib.error
import urllib.request

import pytest
import torch
import torch.nn as nn
from torchvision.models import resnet18, resnet50

from resnet_core.nets import imagenet
from resnet_core.nets.imagenet import ModelError, cache_path, load_imagenet, make_attribution_safe
from tests.unit.loopback import serve


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torch hub's cache in tmp_path through $TORCH_HOME (``torch.hub.set_dir`` would outlive the test
    and pin every later test's cache to one folder)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub"


def test_offline_message_names_file_url_and_path(hub_dir, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
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
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
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


def _serve_as_resnet18(monkeypatch, url: str, file: str) -> None:
    """resnet18's weights enum pointed at the loopback server (URL only; build and categories kept)."""
    build, weights, label = imagenet.ARCHS["resnet18"]
    fake = types.SimpleNamespace(url=f"{url}/{file}", meta=weights.meta, transforms=weights.transforms,
                                 name=weights.name)
    monkeypatch.setitem(imagenet.ARCHS, "resnet18", (build, fake, label))


def _weights_file() -> tuple[bytes, str]:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(resnet18(weights=None).state_dict(), buf)
    body = buf.getvalue()
    return body, f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth"


def test_download_lands_in_the_hub_cache_and_loads(hub_dir, monkeypatch):
    """Catches a download that keeps a temporary file beside the weights or saves to another path."""
    body, file = _weights_file()
    with serve({f"/{file}": body}) as url:
        _serve_as_resnet18(monkeypatch, url, file)
        loaded = load_imagenet("resnet18")
    assert cache_path("resnet18") == hub_dir / "checkpoints" / file
    assert cache_path("resnet18").read_bytes() == body
    assert sorted(p.name for p in (hub_dir / "checkpoints").iterdir()) == [file]
    assert len(loaded.classes) == 1000


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_download_is_refused_and_nothing_stays(hub_dir, monkeypatch, damage):
    """Catches a hash check that is skipped (torchvision's file names carry the sha256 prefix) and a
    half-written file left where the next start would load it."""
    body, file = _weights_file()
    files = {f"/{file}": body[:-100] + bytes(100) if damage == "corrupt" else body}
    truncate = {f"/{file}": 1000} if damage == "truncated" else None
    with serve(files, truncate=truncate) as url:
        _serve_as_resnet18(monkeypatch, url, file)
        with pytest.raises(ModelError) as e:
            load_imagenet("resnet18")
    msg = str(e.value)
    assert ("corrupt" if damage == "corrupt" else "1,000 of") in msg
    assert f"{url}/{file}" in msg and str(hub_dir / "checkpoints" / file) in msg and "\n" not in msg
    assert list((hub_dir / "checkpoints").iterdir()) == []

"""resnet_core.data: the synthetic set, the CIFAR-10 and folder readers, and the device batch loader."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_core.config import DataConfig, RunConfig
from resnet_core.data import (
    CIFAR10_CLASSES,
    CIFAR10_URL,
    SHAPE_CLASSES,
    BatchLoader,
    DataError,
    Dataset,
    iter_test_batches,
    load_cifar10,
    load_dataset,
    load_folder,
    make_shapes,
    normalize,
)

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------
# synthetic shapes
# ---------------------------------------------------------------------------------------------------

def test_make_shapes_shapes_dtypes_and_determinism():
    images, labels, masks = make_shapes(300, seed=11)
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (300,) and labels.dtype == np.int64
    assert masks.shape == (300, 32, 32) and masks.dtype == np.bool_
    assert set(np.unique(labels)) <= set(range(len(SHAPE_CLASSES)))

    # Same seed: identical arrays (regenerated, not just the cached object).
    from resnet_core.data import shapes as data_mod

    fresh = data_mod._make_shapes_cached.__wrapped__(300, 11, 32)
    for a, b in zip((images, labels, masks), fresh):
        np.testing.assert_array_equal(a, b)
    # Cached in-process, and read-only because every caller shares it.
    assert make_shapes(300, seed=11)[0] is images
    assert not images.flags.writeable

    other, _, _ = make_shapes(300, seed=12)
    assert (other != images).mean() > 0.5


def test_make_shapes_other_size():
    images, _, masks = make_shapes(20, seed=0, size=48)
    assert images.shape == (20, 48, 48, 3) and masks.shape == (20, 48, 48)


def test_classes_balanced():
    _, labels, _ = make_shapes(1000, seed=1)
    counts = np.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert counts.min() >= 90 and counts.max() <= 110


def test_masks_nonempty_and_inside_the_image():
    _, _, masks = make_shapes(500, seed=2)
    area = masks.sum(axis=(1, 2))
    assert area.min() >= 15, "every image has a visible object"
    assert area.max() < 0.6 * 32 * 32
    border = masks[:, [0, -1], :].sum(axis=(1, 2)) + masks[:, 1:-1, [0, -1]].sum(axis=(1, 2))
    # Objects stay mostly inside: at most a sliver touches the edge.
    assert (border / area).max() < 0.25
    assert (border / area).mean() < 0.02


def test_masks_mark_the_drawn_object():
    images, _, masks = make_shapes(200, seed=3)
    x = images.astype(np.float32)                                       # (n, S, S, 3)
    m = masks[..., None]
    inside = (x * m).sum(axis=(1, 2)) / m.sum(axis=(1, 2))              # (n, 3) mean colour of the object
    # The object's colour is flat apart from mild shading and noise: low spread inside the mask.
    spread = np.sqrt(((x - inside[:, None, None]) ** 2 * m).sum(axis=(1, 2, 3)) / (3 * m.sum(axis=(1, 2, 3))))
    assert np.median(spread) < 20
    # The object is pushed away from the background colour: the mask is where that colour is.
    # Contrast with the one-pixel ring just outside the mask.
    grown = masks.copy()
    grown[:, 1:] |= masks[:, :-1]
    grown[:, :-1] |= masks[:, 1:]
    grown[:, :, 1:] |= masks[:, :, :-1]
    grown[:, :, :-1] |= masks[:, :, 1:]
    ring = (grown & ~masks)[..., None]
    outside = (x * ring).sum(axis=(1, 2)) / np.maximum(ring.sum(axis=(1, 2)), 1)
    contrast = np.abs(inside - outside).max(axis=1)
    assert np.median(contrast) > 40


def test_synthetic_dataset_train_and_test_differ():
    ds = load_dataset(DataConfig(name="synthetic", n_train=200, n_test=100, seed=5))
    assert ds.name == "synthetic" and ds.classes == list(SHAPE_CLASSES)
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (100, 3, 32, 32) and ds.test_y.dtype == torch.int64
    assert ds.train_masks.shape == (200, 32, 32) and ds.test_masks.dtype == torch.bool
    train = {bytes(a.numpy()) for a in ds.train_x}
    assert not any(bytes(a.numpy()) in train for a in ds.test_x)
    # CHW tensors are the HWC arrays transposed, masks alongside.
    images, labels, masks = make_shapes(200, seed=5)
    assert torch.equal(ds.train_x, torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    assert torch.equal(ds.train_y, torch.from_numpy(labels.copy()))
    assert torch.equal(ds.train_masks, torch.from_numpy(masks.copy()))
    # Mean and std are the train set's, per channel, on a 0..1 scale.
    x = ds.train_x.double() / 255
    np.testing.assert_allclose(ds.mean, x.mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(ds.std, x.std(dim=(0, 2, 3)).numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------------

def _cifar_rows(n: int, offset: int) -> np.ndarray:
    # Row i: a distinct, position-dependent pattern, so a CHW/HWC mix-up or a transposed image shows.
    j = np.arange(3072)
    return np.stack([((j * 7 + i * 13 + offset) % 256) for i in range(n)]).astype(np.uint8)  # (n, 3072)


def _write_cifar(parent: Path, protocol: int = 2, bytes_keys: bool = True) -> dict:
    d = parent / "cifar-10-batches-py"
    d.mkdir(parents=True)
    key = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    written = {}
    for name, n, offset in [(f"data_batch_{i}", 3, i) for i in range(1, 6)] + [("test_batch", 4, 100)]:
        data = _cifar_rows(n, offset)
        labels = [(offset + i) % 10 for i in range(n)]
        (d / name).write_bytes(pickle.dumps({key("batch_label"): key(name), key("data"): data,
                                             key("labels"): labels, key("filenames"): [key("x.png")] * n},
                                            protocol=protocol))
        written[name] = (data, labels)
    names = [key(c.upper()) for c in CIFAR10_CLASSES]
    meta = {key("label_names"): names, key("num_vis"): 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


@pytest.mark.parametrize("protocol,bytes_keys", [(2, True), (4, False), (5, True)])
def test_cifar10_round_trip(tmp_path, protocol, bytes_keys):
    written = _write_cifar(tmp_path, protocol, bytes_keys)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py", str(tmp_path)):
        ds = load_cifar10(root, download=False)
        assert ds.name == "cifar10"
        assert ds.classes == [c.upper() for c in CIFAR10_CLASSES]
        assert ds.train_x.shape == (15, 3, 32, 32) and ds.train_x.dtype == torch.uint8
        assert ds.test_x.shape == (4, 3, 32, 32) and ds.test_y.dtype == torch.int64
    data, labels = written["data_batch_2"]
    x = ds.train_x[3:6]                                                  # batch 2 follows batch 1's three
    # Rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: CHW.
    assert x[1, 0, 0, 1] == data[1, 1] and x[1, 0, 1, 0] == data[1, 32]
    assert x[2, 1, 0, 0] == data[2, 1024] and x[0, 2, 31, 31] == data[0, 3071]
    assert torch.equal(x, torch.from_numpy(data.reshape(3, 3, 32, 32)))
    assert ds.train_y[3:6].tolist() == labels
    test_data, test_labels = written["test_batch"]
    assert torch.equal(ds.test_x, torch.from_numpy(test_data.reshape(4, 3, 32, 32)))
    assert ds.test_y.tolist() == test_labels


def _py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote the official files: protocol 2, numpy.core names, str data."""
    def string(b: bytes) -> bytes:  # SHORT_BINSTRING: a Python 2 str
        return b"U" + bytes([len(b)]) + b

    n, d = data.shape
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + string(b"b")
             + b"\x87R" + b"(K\x01" + b"J" + struct.pack("<i", n) + b"J" + struct.pack("<i", d) + b"\x86"
             + b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
             + b"\x89" + b"T" + struct.pack("<i", data.nbytes) + data.tobytes() + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([y]) for y in labels) + b"e"
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + label_list + b"u."


def test_cifar10_reads_python2_pickles(tmp_path):
    _write_cifar(tmp_path)
    data = _cifar_rows(3, 200)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").write_bytes(_py2_pickle(data, [9, 0, 4]))
    ds = load_cifar10(tmp_path, download=False)
    assert torch.equal(ds.train_x[12:], torch.from_numpy(data.reshape(3, 3, 32, 32)))
    assert ds.train_y[12:].tolist() == [9, 0, 4]


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _OddCodec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import codecs

        return (codecs.encode, (b"x" * 100, "zlib_codec"))


@pytest.mark.parametrize("payload", [_RunsCode, _Evals, _OddCodec])
def test_cifar10_pickle_with_code_is_refused_and_not_run(tmp_path, payload):
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": _cifar_rows(3, 0), b"labels": [0, 1, 2], b"x": payload(marker)}
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path, download=False)
    assert "data_batch_3" in str(err.value)
    assert not marker.exists()


def test_cifar10_truncated_file_names_the_file(tmp_path):
    _write_cifar(tmp_path)
    f = tmp_path / "cifar-10-batches-py" / "test_batch"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(tmp_path, download=False)


def test_cifar10_wrong_content_is_a_data_error(tmp_path):
    _write_cifar(tmp_path)
    f = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    f.write_bytes(pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 0, 0]}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1"):
        load_cifar10(tmp_path, download=False)


def test_cifar10_missing_says_where_and_how(tmp_path):
    where = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_cifar10(where, download=False)
    msg = str(err.value)
    assert str(where) in msg and CIFAR10_URL in msg and "cifar-10-python.tar.gz" in msg


def test_load_dataset_dispatches_cifar10(tmp_path):
    _write_cifar(tmp_path)
    ds = load_dataset(DataConfig(name="cifar10", path=str(tmp_path), download=False))
    assert ds.name == "cifar10" and len(ds.train_y) == 15


# ---------------------------------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------------------------------

COLOURS = {"apples": (200, 30, 30), "leaves": (30, 180, 40), "sky": (40, 60, 220)}


def _write_folder(root: Path, per_class: int = 5) -> None:
    from PIL import Image

    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (40 + 10 * i, 40)  # non-square: exercises the centre crop
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")
    (root / "apples" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    (root / "apples" / "notes.txt").write_text("not an image, not counted")


def test_folder_loads_and_skips_unreadable(tmp_path):
    _write_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = load_folder(tmp_path, size=32, test_fraction=0.2, seed=0)
    assert ds.classes == sorted(COLOURS)
    assert "1 unreadable" in ds.name
    assert ds.train_x.shape == (12, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert torch.bincount(ds.test_y).tolist() == [1, 1, 1]
    for x, y in zip(torch.cat([ds.train_x, ds.test_x]), torch.cat([ds.train_y, ds.test_y])):
        colour = torch.tensor(COLOURS[ds.classes[y]], dtype=torch.uint8)
        assert torch.equal(x[:, 16, 16], colour)
    # Deterministic by seed.
    with pytest.warns(UserWarning):
        again = load_folder(tmp_path, size=32, test_fraction=0.2, seed=0)
    assert torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)


def test_folder_refuses_image_bombs(tmp_path, monkeypatch):
    from PIL import Image

    _write_folder(tmp_path, per_class=2)
    Image.new("RGB", (300, 300), (0, 0, 0)).save(tmp_path / "sky" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 - 1)
    with pytest.warns(UserWarning, match="huge.png"):
        ds = load_folder(tmp_path, size=16)
    assert len(ds.train_y) + len(ds.test_y) == 6


def test_folder_with_one_class_explains_the_layout(tmp_path):
    from PIL import Image

    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DataError, match="CLASS_NAME"):
        load_folder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------
# normalisation, batches, augmentation
# ---------------------------------------------------------------------------------------------------

def _id_dataset(n: int = 50, m: int = 23) -> Dataset:
    # Random pixels; train labels are the image ids, so batches can be traced back to images.
    g = torch.Generator().manual_seed(0)
    train_x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    test_x = torch.randint(0, 256, (m, 3, 32, 32), generator=g, dtype=torch.uint8)
    return Dataset("ids", [str(i) for i in range(n)], train_x, torch.arange(n), test_x, torch.arange(m),
                   mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))


def test_normalize():
    ds = _id_dataset()
    x = normalize(ds.train_x[:4], ds.mean, ds.std)
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32) and x.device == ds.train_x.device
    expect = (ds.train_x[:4, 1].double() / 255 - 0.4) / 0.2
    torch.testing.assert_close(x[:, 1].double(), expect, rtol=1e-5, atol=1e-5)


def _batches(loader: BatchLoader, k: int):
    return [loader.next() for _ in range(k)]


def test_batch_loader_is_deterministic_and_private():
    ds = _id_dataset()
    torch.manual_seed(1)
    state = torch.random.get_rng_state()
    a = _batches(BatchLoader(ds, 16, "cpu", seed=7, pca_color=True), 8)   # crosses two epochs
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG was used"
    torch.manual_seed(2)  # a different model init must not change the data
    b = _batches(BatchLoader(ds, 16, "cpu", seed=7, pca_color=True), 8)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = _batches(BatchLoader(ds, 16, "cpu", seed=8, pca_color=True), 8)
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


def test_batch_loader_epochs_cover_the_data():
    ds = _id_dataset(n=50)
    loader = BatchLoader(ds, 16, "cpu", seed=0, augment=False)
    assert loader.steps_per_epoch == 3 and loader.epoch == 0
    epoch1 = torch.cat([loader.next()[1] for _ in range(3)])
    assert loader.epoch == 1
    epoch2 = torch.cat([loader.next()[1] for _ in range(3)])
    assert loader.epoch == 2
    # A permutation each epoch, the last 50 mod 16 = 2 images dropped, and a new order every epoch.
    assert len(set(epoch1.tolist())) == 48 and len(set(epoch2.tolist())) == 48
    assert not torch.equal(epoch1, epoch2)
    # Without augmentation a batch is exactly the normalised images.
    x, y = loader.next()
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x, normalize(ds.train_x[y], ds.mean, ds.std))


def test_batch_loader_clamps_batch_size():
    ds = _id_dataset(n=10)
    loader = BatchLoader(ds, 128, "cpu", seed=0)
    x, y = loader.next()
    assert x.shape[0] == 10 and loader.steps_per_epoch == 1 and loader.epoch == 1
    assert sorted(y.tolist()) == list(range(10))


def test_augmentation_is_a_padded_crop_with_flip():
    ds = _id_dataset()
    plain_x, plain_y = BatchLoader(ds, 32, "cpu", seed=3, augment=False).next()
    aug_x, aug_y = BatchLoader(ds, 32, "cpu", seed=3, augment=True).next()
    assert aug_x.shape == plain_x.shape and aug_x.dtype == torch.float32
    assert torch.equal(aug_y, plain_y)  # the order is drawn first, so the same images
    padded = torch.nn.functional.pad(plain_x, (4, 4, 4, 4))            # (B, 3, 40, 40), 0 = mean colour
    changed = flipped = 0
    for i in range(len(aug_y)):
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(aug_x[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, dy:dy + 32, dx:dx + 32]))]
        assert matches, f"image {i} is not a padded crop (or its mirror) of the original"
        changed += (4, 4, False) not in matches
        flipped += all(f for _, _, f in matches)
    assert changed > 20 and 5 < flipped < 27


def test_pca_colour_shifts_each_image_by_one_colour():
    ds = load_dataset(DataConfig(name="synthetic", n_train=100, n_test=10, seed=0))
    plain_x, _ = BatchLoader(ds, 32, "cpu", seed=4, augment=False).next()
    pca_x, _ = BatchLoader(ds, 32, "cpu", seed=4, augment=False, pca_color=True).next()
    assert pca_x.shape == plain_x.shape
    shift = pca_x - plain_x                                              # (B, 3, H, W)
    per_image = shift.mean(dim=(2, 3), keepdim=True)                     # (B, 3, 1, 1)
    torch.testing.assert_close(shift, per_image.expand_as(shift), atol=1e-5, rtol=0)
    assert per_image.abs().amax() > 0.01 and per_image.std() > 0.005


def test_channels_last_keeps_values():
    ds = _id_dataset()
    a, _ = BatchLoader(ds, 8, "cpu", seed=0).next()
    b, _ = BatchLoader(ds, 8, "cpu", seed=0, channels_last=True).next()
    assert b.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)


def test_iter_test_batches_covers_the_test_set_in_order():
    ds = _id_dataset(m=23)
    batches = list(iter_test_batches(ds, 5, "cpu"))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(23))
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), normalize(ds.test_x, ds.mean, ds.std))
    assert len(list(iter_test_batches(ds, 5, "cpu", limit=2))) == 2


def test_data_module_does_not_import_streamlit():
    # The core never imports Streamlit (STYLE.md); the package-wide subprocess check lives elsewhere.
    sources = sorted((REPO / "resnet_core" / "data").glob("*.py"))
    assert {p.name for p in sources} >= {"__init__.py", "shapes.py", "cifar.py", "folder.py", "loader.py"}
    for path in sources:
        source = path.read_text()
        assert "import streamlit" not in source and "from streamlit" not in source, path


# ---------------------------------------------------------------------------------------------------
# image size (the quick scale's 16x16) and the clean shapes variant
# ---------------------------------------------------------------------------------------------------

def test_shapes_at_16px_are_the_32px_set_shrunk_with_masks():
    from resnet_core.data import load_dataset

    small = load_dataset(DataConfig(n_train=40, n_test=20, image_size=16))
    big = load_dataset(DataConfig(n_train=40, n_test=20))
    assert small.train_x.shape == (40, 3, 16, 16) and small.test_masks.shape == (20, 16, 16)
    assert torch.equal(small.train_y, big.train_y)              # the same images, labels unchanged
    # each 16px pixel is the average of its 2x2 block at 32px
    pooled = torch.nn.functional.avg_pool2d(big.train_x.float(), 2)
    assert (small.train_x.float() - pooled).abs().max() <= 1.0
    # masks shrink with the images: about the same share of the picture, and where the 32px mask is
    share_small, share_big = small.test_masks.float().mean(), big.test_masks.float().mean()
    assert abs(share_small - share_big) < 0.03
    big_pooled = torch.nn.functional.avg_pool2d(big.test_masks[:, None].float(), 2)[:, 0]
    assert torch.equal(small.test_masks, big_pooled >= 0.5)


def test_clean_variant_keeps_objects_and_drops_clutter():
    from resnet_core.data import make_shapes

    clean, labels_c, masks_c = make_shapes(30, 0, 32, clutter=False)
    busy, labels_b, masks_b = make_shapes(30, 0, 32)
    assert np.array_equal(labels_c, labels_b) and np.array_equal(masks_c, masks_b)  # same objects and poses
    # outside the object the clean images are smoother (no strokes, less noise)
    diff = lambda a: np.abs(np.diff(a.astype(np.float32), axis=2)).mean()          # noqa: E731
    assert diff(clean) < diff(busy)


def test_large_variant_draws_the_same_objects_bigger():
    from resnet_core.data import make_shapes
    from resnet_core.data.shapes import LARGE_OBJECT_RADIUS, OBJECT_RADIUS

    std, labels_s, masks_s = make_shapes(200, 0, 32)
    large, labels_l, masks_l = make_shapes(200, 0, 32, large=True)
    assert np.array_equal(labels_s, labels_l)                 # the same classes in the same order
    area_s, area_l = masks_s.sum(axis=(1, 2)).astype(float), masks_l.sum(axis=(1, 2)).astype(float)
    assert (area_l > area_s).mean() > 0.95                     # every radius draw maps to a larger one
    # the area grows with the square of the mean radius, (0.85 / 0.675)^2 = 1.59 on average
    expected = (sum(LARGE_OBJECT_RADIUS) / sum(OBJECT_RADIUS)) ** 2
    assert abs(area_l.mean() / area_s.mean() - expected) < 0.15
    cfg = RunConfig(data=DataConfig(large_objects=True, image_size=16))
    assert cfg.label.endswith("16px large")


def test_cifar_and_folder_are_resized(tmp_path):
    from resnet_core.data import load_dataset

    _write_cifar(tmp_path / "c")
    ds = load_dataset(DataConfig(name="cifar10", path=str(tmp_path / "c"), download=False, image_size=16))
    assert ds.train_x.shape[1:] == (3, 16, 16) and ds.test_x.shape[1:] == (3, 16, 16)
    _write_folder(tmp_path / "f")
    with pytest.warns(UserWarning):
        f = load_dataset(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=16))
    assert f.train_x.shape[1:] == (3, 16, 16)


def test_crop_padding_scales_with_the_image():
    from resnet_core.data.loader import pad_for

    assert (pad_for(32), pad_for(16), pad_for(8), pad_for(64)) == (4, 2, 1, 8)
    ds = _id_dataset()
    small = Dataset(ds.name, ds.classes, ds.train_x[:, :, :16, :16].contiguous(), ds.train_y,
                    ds.test_x[:, :, :16, :16].contiguous(), ds.test_y, ds.mean, ds.std)
    x, _ = BatchLoader(small, 8, "cpu", seed=0, augment=True, channels_last=False).next()
    assert x.shape == (8, 3, 16, 16)


def test_folder_whole_puts_every_image_in_the_test_set(tmp_path):
    _write_folder(tmp_path)
    with pytest.warns(UserWarning):
        ds = load_folder(tmp_path, size=32, whole=True)
    assert ds.test_x.shape[0] == 15 and torch.bincount(ds.test_y).tolist() == [5, 5, 5]

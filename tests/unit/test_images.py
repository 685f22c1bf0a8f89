"""load_image against every bad input of issue #4, each generated here, and the model-input resize."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core.data.images import (MAX_PIXELS, ImageError, is_tiny, load_image, model_view,
                                to_model_input)


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _png_declaring(w: int, h: int) -> bytes:
    """A valid PNG signature and IHDR declaring w x h, with a tiny IDAT: a decompression bomb header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _quadrants(w=40, h=20) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2:] = (0, 255, 0)
    a[h // 2:, : w // 2] = (0, 0, 255)
    a[h // 2:, w // 2:] = (255, 255, 255)
    return Image.fromarray(a)


def _assert_rgb8(img: Image.Image):
    assert img.mode == "RGB"
    assert np.asarray(img).dtype == np.uint8


# --- refused ------------------------------------------------------------------------------------

def test_zero_byte_file_refused(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(p)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_text_named_jpg_refused(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 10)
    with pytest.raises(ImageError, match="not an image"):
        load_image(p)


def test_truncated_png_refused():
    rng = np.random.default_rng(0)
    data = _png_bytes(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_header_refused():
    # 30000 x 30000 declared in ~100 bytes: Pillow's own guard would fire too; ours speaks first.
    with pytest.raises(ImageError, match="limit is 40 MP"):
        load_image(_png_declaring(30000, 30000))


def test_20000_square_refused_with_the_limit():
    data = _png_declaring(20000, 20000)
    assert len(data) < 200
    with pytest.raises(ImageError, match=r"400 MP; the limit is 40 MP"):
        load_image(data)


def test_real_compressed_bomb_below_pillow_limit_refused():
    # A real 1-bit 7000 x 7000 image (49 MP) compresses to a few kB: only our cap stops it.
    data = _png_bytes(Image.new("1", (7000, 7000), 0), optimize=True)
    assert len(data) < 100_000
    assert 7000 * 7000 > MAX_PIXELS
    with pytest.raises(ImageError, match="7000x7000"):
        load_image(data)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


# --- accepted and converted ---------------------------------------------------------------------

def test_one_pixel_accepted_and_upscaled():
    img = load_image(_png_bytes(Image.new("RGB", (1, 1), (10, 200, 30))))
    _assert_rgb8(img)
    assert img.size == (1, 1) and is_tiny(img)
    x = to_model_input(img, 32, (0, 0, 0), (1, 1, 1))
    assert x.shape == (1, 3, 32, 32)
    assert torch.allclose(x[0, :, 5, 7], torch.tensor([10, 200, 30]) / 255.0, atol=1e-6)


def test_16bit_grayscale_rescaled_not_clipped():
    a = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    data = _png_bytes(Image.fromarray(a))  # saved as a 16-bit PNG
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = load_image(data)
    _assert_rgb8(img)
    assert np.asarray(img)[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg_converted():
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buf, format="JPEG", quality=95)  # red in CMYK
    img = load_image(buf.getvalue())
    _assert_rgb8(img)
    r, g, b = np.asarray(img)[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_on_white():
    p = Image.new("P", (8, 8), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((0, 0), 1)
    data = _png_bytes(p, transparency=0)  # index 0 (red) is transparent
    a = np.asarray(load_image(data))
    assert a[4, 4].tolist() == [255, 255, 255]
    assert a[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize("mode,value,expected", [
    ("L", 77, [77, 77, 77]),
    ("1", 1, [255, 255, 255]),
    ("LA", (100, 0), [255, 255, 255]),          # fully transparent -> white
    ("LA", (100, 255), [100, 100, 100]),
    ("RGBA", (0, 0, 0, 0), [255, 255, 255]),
    ("RGBA", (0, 0, 0, 128), [127, 127, 127]),  # half transparent black over white
    ("RGBA", (10, 20, 30, 255), [10, 20, 30]),
])
def test_modes_converted(mode, value, expected):
    a = np.asarray(load_image(_png_bytes(Image.new(mode, (5, 3), value))))
    assert a.shape == (3, 5, 3)
    assert np.abs(a[1, 2].astype(int) - expected).max() <= 1


def test_exif_rotated_jpeg_shown_upright():
    upright = _quadrants(40, 20)
    # Stored rotated 90 degrees clockwise with orientation 6 ("rotate 90 CW to display"): a viewer
    # that honours EXIF shows the upright picture.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    img = load_image(buf.getvalue())
    assert img.size == (40, 20)
    a = np.asarray(img).astype(int)
    assert a[3, 3].argmax() == 0 and a[3, 3, 0] > 200     # red top-left
    assert a[3, 36].argmax() == 1 and a[3, 36, 1] > 200   # green top-right
    assert a[16, 3].argmax() == 2 and a[16, 3, 2] > 200   # blue bottom-left
    assert a[16, 36].min() > 200                           # white bottom-right


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 3
    a = np.asarray(load_image(buf.getvalue()))
    assert a[5, 5].tolist() == [255, 0, 0]


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_other_formats(fmt):
    buf = io.BytesIO()
    _quadrants().save(buf, format=fmt)
    _assert_rgb8(load_image(buf.getvalue()))


def test_file_object_and_path(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(_png_bytes(_quadrants()))
    assert load_image(p).size == (40, 20)
    assert load_image(str(p)).size == (40, 20)
    assert load_image(io.BytesIO(p.read_bytes())).size == (40, 20)


# --- model input --------------------------------------------------------------------------------

def test_cifar_plain_resize_and_normalisation():
    x = to_model_input(_quadrants(64, 32), 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    # top-left is red: (1 - 0.5) / 0.25 = 2 in R, (0 - 0.5) / 0.25 = -2 in G and B
    assert torch.allclose(x[0, :, 2, 2], torch.tensor([2.0, -2.0, -2.0]))


def test_imagenet_centre_crop_matches_torchvision():
    from torchvision.transforms import v2 as T

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).filter(
        __import__("PIL.ImageFilter", fromlist=["GaussianBlur"]).GaussianBlur(4))
    ours = np.asarray(model_view(img, 224)).astype(float)
    ref = T.Compose([T.Resize(256), T.CenterCrop(224)])(img)
    assert ours.shape == (224, 224, 3)
    assert np.abs(ours - np.asarray(ref).astype(float)).mean() < 2.0


def test_extreme_aspect_does_not_blow_up():
    img = Image.new("RGB", (1, 5000), (1, 2, 3))
    assert model_view(img, 224).size == (224, 224)

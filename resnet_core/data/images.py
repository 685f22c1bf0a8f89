"""Safe image loading for uploads and the CLI, and the resize a model expects.

Every image a user gives is untrusted. ``load_image`` returns an upright 8-bit RGB ``PIL.Image`` or
raises ``ImageError`` with one sentence saying what was wrong and what to do; it never lets a
decoder exception through. The rules, in order:

* at most ``MAX_FILE_BYTES`` read; an empty file is refused;
* only PNG, JPEG, WebP, BMP, GIF and TIFF decoders are tried (``Image.open(formats=)``),
  so an odd file cannot reach a rarely used decoder;
* a decompression-bomb cap: the size declared in the header must be at most ``MAX_PIXELS`` (40 MP),
  checked before any pixel is decoded (Pillow's own, larger limit is also turned into this message);
* truncated or corrupt pixel data is refused (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off);
* animated GIF/WebP/TIFF: the first frame;
* EXIF orientation is applied, so a phone photo is shown and classified upright;
* 16-bit and 32-bit grayscale are rescaled to 8 bits (Pillow's ``convert("L")`` clips them instead);
  CMYK, palette, 1-bit, grayscale and YCbCr are converted to RGB; transparency (RGBA, LA, PA, a
  palette with a transparent index) is composited on white, as a browser shows it on a page;
* tiny images are accepted (even 1x1) and upscaled to the model's input, which makes them a flat or
  blocky picture: the caller can say so with ``is_tiny``.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from resnet_core.data.loader import normalize
from resnet_core.files import NotARegularFile, read_regular

MAX_FILE_BYTES = 50 * 1024 * 1024     # the CLI's cap; the dashboard's upload cap is in .streamlit/config.toml
MAX_PIXELS = 40_000_000               # 40 MP: above a 48 MP phone photo's 12 MP binned output, far below a bomb
TINY_SIDE = 8                         # below this, the picture carries almost nothing at 32x32
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG also opens phone MPO files
FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"
# torchvision's ImageNet evaluation transform: resize the shorter side to 256, centre-crop 224.
IMAGENET_CROP_RATIO = 224 / 256
BACKGROUND = (255, 255, 255)          # transparent pixels are composited on white


class ImageError(ValueError):
    """An input that is not a usable image; the message is one sentence for a person."""


def _read_bytes(source: bytes | bytearray | str | Path | io.IOBase) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"image file not found: {path}")
        try:  # a regular file only: a FIFO or a device would block or never end
            data = read_regular(path, MAX_FILE_BYTES, "image file")
        except ValueError as e:
            raise ImageError(f"{e}: resize or recompress it") from None
        except OSError as e:
            raise ImageError(str(e) if isinstance(e, NotARegularFile) else f"cannot read {path}: {e.strerror}") from None
    else:  # a file-like object, e.g. Streamlit's UploadedFile
        data = source.read(MAX_FILE_BYTES + 1)
    if len(data) == 0:
        raise ImageError("the file is empty (0 bytes): choose an image file")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"the file is larger than {MAX_FILE_BYTES // 2**20} MB: resize or recompress it")
    return data


def _too_large(w: int, h: int, limit: int = MAX_PIXELS) -> ImageError:
    return ImageError(f"the image declares {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
                      f"{limit / 1e6:g} MP (a guard against decompression bombs): downscale it first")


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """I;16*, I (32-bit int) and F (float) grayscale to L, rescaled rather than clipped."""
    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        a = np.nan_to_num(a)
        lo, hi = (0.0, 1.0) if a.min() >= 0 and a.max() <= 1 else (float(a.min()), float(a.max()))
        a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    else:
        a = a.astype(np.int64)
        # 16-bit files use 0..65535; a 32-bit "I" image holding 8-bit values is left as is.
        if a.max() > 255 or img.mode.startswith("I;16"):
            a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit_gray(img)
    if img.mode == "P":
        # A palette may carry transparency; going through RGBA keeps it.
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    elif img.mode in ("RGB", "L", "1") and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(source: bytes | str | Path | io.IOBase, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An upright 8-bit RGB image from bytes, a path or a file object; ``ImageError`` otherwise.
    ``max_pixels`` (width x height, as declared in the header) may be lowered, e.g. by a shared server."""
    max_pixels = min(max_pixels, MAX_PIXELS)
    data = _read_bytes(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            w, h = img.size
            if w < 1 or h < 1:
                raise ImageError(f"the image declares {w}x{h} pixels: nothing to show")
            if w * h > max_pixels:
                raise _too_large(w, h, max_pixels)
            img.seek(0)  # animated GIF/WebP/TIFF: the first frame
            img.load()
            img = ImageOps.exif_transpose(img)
            out = _to_rgb(img)
            out.load()
            return out
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow checks its own (larger) limit inside open(), before we see the size: "Image size
        # (400000000 pixels) exceeds limit ...".
        m = re.search(r"\((\d+) pixels\)", str(e))
        declared = f"{int(m.group(1)) / 1e6:.0f} MP" if m else "more than that"
        raise ImageError(f"the image declares {declared}; the limit is {MAX_PIXELS / 1e6:.0f} MP (a guard "
                         "against decompression bombs): downscale it first") from None
    except UnidentifiedImageError:
        raise ImageError(f"not an image, or not a supported format: use {FORMAT_NAMES}") from None
    except MemoryError:
        raise ImageError("the image is too large to decode in memory: downscale it first") from None
    except Exception as e:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error...
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise ImageError(f"the image data is truncated or corrupt ({first}): re-export or re-download it") from None


def is_tiny(img: Image.Image) -> bool:
    return min(img.size) < TINY_SIDE


def model_view(img: Image.Image, size: int) -> Image.Image:
    """The RGB picture, ``size`` x ``size``, that the model sees.

    CIFAR-sized models (``size`` < 64): a plain resize of the whole picture (aspect not kept), as the
    32x32 training images were whole, small scenes. ImageNet models: torchvision's evaluation crop
    (shorter side to 256, centre 224), computed as "centre-crop 224/256 of the shorter side, then
    resize" so a 1x10000 strip never becomes a 256x2560000 intermediate.
    """
    if size < 64:
        return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    w, h = img.size
    side = min(w, h) * IMAGENET_CROP_RATIO
    left, top = (w - side) / 2, (h - side) / 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side),
                      reducing_gap=3.0)


def normalize_image(view: Image.Image, mean, std) -> torch.Tensor:
    """(1, 3, H, W) float32 from an RGB image, normalised as the training batches are."""
    x = torch.from_numpy(np.asarray(view.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
    return normalize(x.unsqueeze(0), mean, std)


def to_model_input(img: Image.Image, size: int, mean, std) -> torch.Tensor:
    """(1, 3, size, size) float32, normalised with the model's own mean and std (0..1 scale)."""
    return normalize_image(model_view(img, size), mean, std)

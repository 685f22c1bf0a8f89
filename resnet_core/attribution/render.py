"""Attribution maps drawn over images: colour scales, normalisation, overlays, PNG bytes."""
from __future__ import annotations

import io

import matplotlib
import numpy as np
from PIL import Image


# --- rendering -----------------------------------------------------------------------------------------

def colourise(norm: np.ndarray, signed: bool) -> np.ndarray:
    """(H, W) 0..1 -> (H, W, 3) uint8: matplotlib's inferno (dark to bright) for magnitudes; for signed
    maps RdBu_r (blue negative, white zero, red positive) without its darkest tenth at each end, so
    the image still shows through the strongest colours."""
    if signed:
        return matplotlib.colormaps["RdBu_r"](0.1 + 0.8 * np.clip(norm, 0, 1), bytes=True)[..., :3]
    return matplotlib.colormaps["inferno"](norm, bytes=True)[..., :3]


def normalise_map(attr_map: np.ndarray, signed: bool, percentile: float = 99.0) -> np.ndarray:
    """To 0..1 for display, clipped at the 99th percentile of |map| so one spiky gradient does not
    wash out the rest (signed maps: 0.5 is zero)."""
    a = np.nan_to_num(np.asarray(attr_map, dtype=np.float64))
    scale = np.percentile(np.abs(a), percentile) or np.abs(a).max() or 1.0
    if signed:
        return np.clip(a / scale, -1, 1) / 2 + 0.5
    return np.clip(np.abs(a) / scale, 0, 1)


def overlay(view: Image.Image, attr_map: np.ndarray, *, alpha: float = 0.5, signed: bool = False,
            display_size: int = 256) -> Image.Image:
    """The map over the image the model saw, both scaled to ``display_size`` (nearest for a 32 px image)."""
    base = view.convert("RGB").resize((display_size, display_size),
                                      Image.Resampling.NEAREST if view.width < 64 else Image.Resampling.BILINEAR)
    norm = normalise_map(attr_map, signed)
    heat = Image.fromarray(colourise(norm, signed), "RGB")
    heat = heat.resize((display_size, display_size), Image.Resampling.BILINEAR)
    return Image.blend(base, heat, float(np.clip(alpha, 0.0, 1.0)))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

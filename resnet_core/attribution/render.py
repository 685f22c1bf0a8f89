"""Attribution maps drawn over images: colour scales, normalisation, overlays, PNG bytes."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


# --- rendering -----------------------------------------------------------------------------------------

# Anchors of a perceptually ordered dark-to-bright heat scale (close to matplotlib's "inferno").
_HEAT = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)
# Blue (negative) - white - red (positive) for signed maps.
_DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]],
                      dtype=np.float64)


def _colormap(v: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    pos = np.clip(v, 0, 1) * (len(anchors) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    t = (pos - lo)[..., None]
    return anchors[lo] * (1 - t) + anchors[lo + 1] * t  # (H, W, 3) 0..255


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
    heat = Image.fromarray(_colormap(norm, _DIVERGING if signed else _HEAT).astype(np.uint8), "RGB")
    heat = heat.resize((display_size, display_size), Image.Resampling.BILINEAR)
    return Image.blend(base, heat, float(np.clip(alpha, 0.0, 1.0)))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

"""Uploads in, pictures out: decode uploaded bytes with the project's own readers, and draw the PNGs the API
returns (the X-ray with its lung outline, and with the Grad-CAM heatmap).

Drawing is plain numpy + Pillow (no matplotlib figure per request): a few milliseconds, no global state,
safe in worker threads.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from ..data.io import read_image, sniff_bytes
from ..errors import ImageReadError
from ..ood import read_rgb_thumbnail

WEB_MAX_SIDE = 512
"""Longest side of the PNGs returned to clients: enough for a screen, small enough for a JSON body."""
OUTLINE_RGB = (57, 255, 20)
CAM_ALPHA = 0.45
FORMATS = "PNG, JPEG or DICOM"


class UnsupportedMedia(ImageReadError):
    """Content that is none of the accepted formats (sniffed from the bytes, never from the name)."""


def decode_upload(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode uploaded bytes like a file on disk: (image (H, W) float32 in [0, 1], RGB thumbnail or None).

    The bytes go, in memory, through the same readers as `lungxray predict` (format sniffing, decompression-bomb
    guard, DICOM windowing), so the server cannot drift from the CLI; nothing is written to disk.

    Raises:
        UnsupportedMedia: not a PNG, JPEG or DICOM file.
        ImageReadError: the format is right but the content cannot be decoded (corrupt, truncated, too large).
    """
    kind = sniff_bytes(data[:132])
    if kind is None:
        raise UnsupportedMedia(f"{name}: not a {FORMATS} file (judged from its content, whatever its name or type says)")
    image = read_image(data, name=name)
    rgb = read_rgb_thumbnail(io.BytesIO(data)) if kind != "dicom" else None
    return image, rgb


def _fit(arr: np.ndarray, max_side: int, resample: int) -> np.ndarray:
    h, w = arr.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return arr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if arr.dtype == bool:
        return np.asarray(Image.fromarray(arr.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
    return np.asarray(Image.fromarray(arr.astype(np.float32)).resize(size, resample), dtype=np.float32)


def jet(values: np.ndarray) -> np.ndarray:
    """matplotlib's "jet" colour map (blue-cyan-yellow-red) for values in [0, 1] -> float RGB (..., 3) in [0, 1]."""
    from matplotlib import colormaps

    return colormaps["jet"](np.clip(values, 0.0, 1.0))[..., :3].astype(np.float32)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a bool mask: those that `width` erosions with the 4-neighbourhood remove (scipy)."""
    from scipy.ndimage import binary_erosion, generate_binary_structure

    inner = binary_erosion(mask, structure=generate_binary_structure(2, 1), iterations=max(1, width), border_value=0)
    return mask & ~inner


def render_png(image: np.ndarray, mask: np.ndarray | None = None, cam: np.ndarray | None = None,
               max_side: int = WEB_MAX_SIDE) -> bytes:
    """The X-ray as an RGB PNG (longest side at most `max_side`), with the lung outline and/or Grad-CAM blended in.

    Args:
        image: (H, W) float in [0, 1]; `mask` (bool) and `cam` (float in [0, 1]) of the same shape, or None.
    """
    gray = _fit(image, max_side, Image.Resampling.BILINEAR)
    rgb = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    if cam is not None:
        heat = jet(_fit(cam, max_side, Image.Resampling.BILINEAR))
        rgb = (1 - CAM_ALPHA) * rgb + CAM_ALPHA * heat
    out = np.rint(rgb * 255).astype(np.uint8)
    if mask is not None and mask.any():
        small = _fit(mask.astype(bool), max_side, Image.Resampling.NEAREST)
        out[outline(small, width=max(1, max(small.shape) // 256))] = OUTLINE_RGB
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

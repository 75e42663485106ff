"""Size limits every image reader enforces from the header, before any pixel is decoded."""

from __future__ import annotations

from ..errors import ImageReadError

MAX_PIXELS = 8192 * 8192
"""Largest image (in pixels) we agree to decode; real radiographs are at most ~4k x 4k."""
MAX_SIDE = 16384


def check_dims(label: str, width: int, height: int) -> None:
    """Refuse an empty image or one larger than `MAX_PIXELS` / `MAX_SIDE`; `label` names it in the message."""
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{label}: image has an empty size {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageReadError(
            f"{label}: image is {width}x{height} pixels, more than the {MAX_PIXELS:,} allowed; "
            "refusing to decode it (possible decompression bomb). Downscale it first."
        )

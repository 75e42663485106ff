"""A picture to check a mask by eye: the lung outline drawn on the X-ray."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.io import resize_mask, to_uint8

OUTLINE_RGB = (255, 64, 0)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a bool mask, `width` pixels thick (inside the mask)."""
    mask = np.asarray(mask, dtype=bool)
    inner = ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)
    return mask & ~inner


def overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = OUTLINE_RGB) -> np.ndarray:
    """RGB uint8 (H, W, 3): the [0, 1] image in gray with the mask's outline in `color`.

    The mask is resized to the image if needed; the line grows with the image (1 px per 256 px of side).
    """
    if mask.shape != image.shape:
        mask = resize_mask(mask, image.shape)
    gray = to_uint8(image)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb[outline(mask, width=max(1, round(max(image.shape) / 256)))] = color
    return rgb

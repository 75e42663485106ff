"""Mask clean-up: a chest film has two lung fields without holes, so keep the two largest regions and fill them.

A U-Net occasionally marks a few bright pixels outside the chest or leaves a hole where an opacity makes
the lung look like soft tissue; both are fixed here, not by the classifier downstream.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def keep_largest_components(mask: np.ndarray, keep: int = 2, min_fraction: float = 0.05) -> np.ndarray:
    """Keep the `keep` largest 8-connected regions, dropping any smaller than `min_fraction` of the largest.

    The relative floor matters when both lungs touch and form one region: the "second largest" is then
    a spurious blob, not a lung.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes, kind="stable")[::-1][:keep]
    chosen = [i + 1 for i in order if sizes[i] >= min_fraction * sizes[order[0]]]
    return np.isin(labels, chosen)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every background region not connected to the image border."""
    return ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))


def postprocess_mask(mask: np.ndarray, keep: int = 2, min_fraction: float = 0.05) -> np.ndarray:
    """Keep the two largest regions, then fill their holes. Returns a new bool array of the same shape."""
    return fill_holes(keep_largest_components(mask, keep, min_fraction))

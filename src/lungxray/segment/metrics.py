"""Overlap and boundary metrics for binary masks: Dice and the 95th-percentile Hausdorff distance (HD95)."""

from __future__ import annotations

import math
import warnings

import numpy as np


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|) (MONAI's `compute_dice`); 1.0 when both masks are empty (nothing to find, nothing
    found)."""
    from monai.metrics import compute_dice
    import torch

    pred, target = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    if pred.shape != target.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {target.shape}")
    p, t = torch.from_numpy(pred)[None, None], torch.from_numpy(target)[None, None]
    return float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])


def hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance between mask boundaries, in pixels of the given grid.

    0.0 when both are empty; inf when exactly one is empty (the distance is undefined, and treating it as
    a large finite number would hide a missed lung in an average).
    """
    from monai.metrics import compute_hausdorff_distance
    import torch

    pred, target = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    if pred.shape != target.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {target.shape}")
    if not pred.any() and not target.any():
        return 0.0
    if not pred.any() or not target.any():
        return math.inf
    p = torch.from_numpy(pred)[None, None]
    t = torch.from_numpy(target)[None, None]
    with warnings.catch_warnings():
        # MONAI 1.5+ passes one of its own deprecated arguments internally; the warning is not ours to fix.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\.")
        return float(compute_hausdorff_distance(p, t, include_background=True, percentile=95.0)[0, 0])


def summarize(values: list[float] | np.ndarray) -> dict:
    """Mean, standard deviation, median, 5th percentile, min and count of finite values (+ how many were not)."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return {"n": int(arr.size), "non_finite": int(arr.size)}
    return {
        "n": int(arr.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(np.median(finite)),
        "p5": float(np.percentile(finite, 5)),
        "p95": float(np.percentile(finite, 95)),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "non_finite": int(arr.size - finite.size),
    }

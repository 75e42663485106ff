"""Score a Segmenter on image/mask pairs at the masks' own resolution (Dice and HD95 per image)."""

from __future__ import annotations

import numpy as np

from ..data.io import read_image, read_mask
from ..errors import ImageReadError
from ..progress import bar as progress_bar
from .data import MaskPair
from .inference import Segmenter
from .metrics import dice, hd95, summarize


def evaluate_pairs(seg: Segmenter, pairs: list[MaskPair], progress: bool = True, desc: str = "scoring",
                   chunk: int = 32) -> dict:
    """Predict each image's mask on its reference mask's grid (256x256 in both datasets) and compare.

    Returns:
        {"n", "dice": summary, "hd95": summary, "per_image": [{"key", "dice", "hd95"}], "skipped": [...]}.
        HD95 is in pixels of the reference grid.
    """
    rows, skipped = [], []
    bar = progress_bar(total=len(pairs), desc=desc, unit="img", enabled=progress)
    for start in range(0, len(pairs), chunk):
        images, refs, keys = [], [], []
        for pair in pairs[start : start + chunk]:
            try:
                images.append(read_image(pair.image))
                refs.append(read_mask(pair.mask))
                keys.append(pair.key)
            except (ImageReadError, OSError) as exc:
                skipped.append((pair.key, str(exc)))
        preds: list = [None] * len(images)
        for shape in sorted({r.shape for r in refs}):
            which = [i for i, r in enumerate(refs) if r.shape == shape]
            for i, m in zip(which, seg.predict([images[i] for i in which], size=shape)):
                preds[i] = m
        for key, pred, ref in zip(keys, preds, refs):
            rows.append({"key": key, "dice": dice(pred, ref), "hd95": hd95(pred, ref)})
        bar.update(len(pairs[start : start + chunk]))
    bar.close()
    return {
        "n": len(rows),
        "dice": summarize([r["dice"] for r in rows]),
        "hd95": summarize([r["hd95"] for r in rows]),
        "per_image": rows,
        "skipped": skipped,
    }


def near_duplicates_of(hashes: np.ndarray, reference: np.ndarray, max_distance: int = 4) -> int:
    """How many of `hashes` have a near-duplicate (dHash within `max_distance` bits) among `reference`."""
    from ..data.hashing import near_duplicate_pairs

    if len(hashes) == 0 or len(reference) == 0:
        return 0
    n = len(hashes)
    pairs = near_duplicate_pairs(np.concatenate([hashes, reference]), max_distance)
    return len({i for i, j, _ in pairs if i < n <= j})

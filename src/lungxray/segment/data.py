"""Image/mask pairs for segmentation: discovery in both dataset layouts, decoding, and a seeded held-out split.

Two mask conventions exist and both are read the same way (by `lungxray.data.io.read_mask`):
- COVID-19 Radiography Database: `<Class>/images/X.png` + `<Class>/masks/X.png`, RGB 0/255, 256x256;
- COVID-QU-Ex: `<Class>/images/X.png` + `<Class>/lung masks/X.png`, grayscale 0/255, 256x256.
Pairs are matched by file name (case-insensitive stem). Every decoded pair is resized to the model size
and quantised to uint8 exactly like the classifier cache, so training and inference see the same pixels.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.discovery import IMAGE_DIRS, MASK_DIRS, is_image_file
from ..data.hashing import dhash, group_near_duplicates, near_duplicate_pairs
from ..data.io import read_image, read_mask, resize_image, resize_mask, to_uint8
from ..errors import DatasetError, ImageReadError
from ..progress import bar as progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskPair:
    """One image and its lung mask. `key` is the image path relative to the source folder (posix)."""

    image: Path
    mask: Path
    source: str
    key: str


def find_pairs(root: str | Path, source: str | None = None) -> list[MaskPair]:
    """Every image that has a same-named mask, anywhere below `root` (sorted by relative path).

    Args:
        root: a folder holding `images/` + `masks/` (or `lung masks/`), or any parent of such folders.
        source: name recorded in each pair; default the folder's name.
    Raises:
        DatasetError: no such folder, or no image/mask pairs below it.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (give a folder with images/ and masks/ or 'lung masks/' below it)")
    source = source or root.resolve().name
    pairs: list[MaskPair] = []
    for folder, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        if here.name not in IMAGE_DIRS:
            continue
        mask_dir = next((here.parent / d for d in MASK_DIRS if (here.parent / d).is_dir()), None)
        if mask_dir is None:
            continue
        masks = {m.stem.lower(): m for m in sorted(mask_dir.iterdir()) if is_image_file(m)}
        for img in sorted(p for p in here.iterdir() if is_image_file(p)):
            mask = masks.get(img.stem.lower())
            if mask is not None:
                pairs.append(MaskPair(img, mask, source, img.relative_to(root).as_posix()))
    if not pairs:
        raise DatasetError(
            f"{root}: no image/mask pairs found; expected <folder>/images/X.png with <folder>/masks/X.png "
            "(RGB, Radiography Database) or <folder>/lung masks/X.png (grayscale, COVID-QU-Ex)"
        )
    return sorted(pairs, key=lambda p: p.key)


@dataclass
class PairSet:
    """Decoded pairs at one size, aligned with `pairs`: images uint8 (N, H, W), masks bool (N, H, W)."""

    pairs: list[MaskPair]
    images: np.ndarray
    masks: np.ndarray
    hashes: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, idx) -> "PairSet":
        idx = np.asarray(idx, dtype=np.int64)
        return PairSet([self.pairs[i] for i in idx], self.images[idx], self.masks[idx], self.hashes[idx], [])

    def sample(self, i: int) -> dict:
        """The project's sample shape: image (float [0, 1]), mask (bool), label (None: no class here), path."""
        return {"image": self.images[i].astype(np.float32) / 255.0, "mask": self.masks[i], "label": None,
                "path": str(self.pairs[i].image)}


def read_pair(pair: MaskPair, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one pair: (uint8 image at `size`, bool mask at `size`, 256-bit dHash of the full image)."""
    image = read_image(pair.image)
    mask = read_mask(pair.mask)
    return to_uint8(resize_image(image, size)), resize_mask(mask, size), dhash(image)


def load_pairs(pairs: list[MaskPair], size: tuple[int, int], progress: bool = True, desc: str = "reading pairs") -> PairSet:
    """Decode every pair into memory (a few thousand 256x256 pairs are ~130 MB); unreadable pairs are skipped and listed."""
    kept, images, masks, hashes, skipped = [], [], [], [], []
    for pair in progress_bar(pairs, desc=desc, unit="pair", enabled=progress):
        try:
            img, mask, h = read_pair(pair, size)
        except (ImageReadError, OSError) as exc:
            skipped.append((str(pair.image), str(exc)))
            continue
        kept.append(pair)
        images.append(img)
        masks.append(mask)
        hashes.append(h)
    for path, msg in skipped[:10]:
        log.warning("skipped unreadable pair %s", msg)
    if not kept:
        raise DatasetError(f"none of the {len(pairs)} image/mask pairs could be read (first error: {skipped[0][1] if skipped else '-'})")
    h, w = size
    return PairSet(
        kept,
        np.stack(images) if images else np.zeros((0, h, w), np.uint8),
        np.stack(masks) if masks else np.zeros((0, h, w), bool),
        np.stack(hashes) if hashes else np.zeros((0, 4), np.uint64),
        skipped,
    )


def holdout_split(
    candidates: PairSet,
    fraction: float,
    seed: int,
    others: np.ndarray | None = None,
    max_distance: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Split `candidates` into (train, held-out) indices, about `fraction` held out, reproducibly from `seed`.

    Near-duplicate images (dHash within `max_distance` bits) stay on one side. A candidate that is a
    near-duplicate of any image in `others` (the other training sources) is never held out: scoring it
    would measure memory, not segmentation.
    """
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"held-out fraction must be in [0, 1), got {fraction}")
    n = len(candidates)
    if fraction == 0.0 or n == 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    others = np.zeros((0, 4), np.uint64) if others is None else others
    allh = np.concatenate([candidates.hashes, others]) if len(others) else candidates.hashes
    groups = group_near_duplicates(len(allh), near_duplicate_pairs(allh, max_distance))
    forced = set(groups[n:].tolist())
    cand_groups = groups[:n]
    eligible = np.array(sorted(set(cand_groups.tolist()) - forced), dtype=np.int64)
    rng = np.random.default_rng(seed)
    rng.shuffle(eligible)
    target = int(round(fraction * n))
    held_groups: set[int] = set()
    count = 0
    sizes = np.bincount(cand_groups)
    for g in eligible:
        if count >= target:
            break
        held_groups.add(int(g))
        count += int(sizes[g])
    is_held = np.isin(cand_groups, list(held_groups))
    return np.nonzero(~is_held)[0], np.nonzero(is_held)[0]

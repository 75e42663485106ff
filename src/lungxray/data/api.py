"""The dataset commands as library calls: inspect, split, and loading a split for training."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .cache import Prepared, prepare
from .discovery import Sample, scan_dataset
from .split import (
    ManifestRow,
    cap_per_class,
    cross_split_pairs,
    make_split,
    manifest_fingerprint,
    read_manifest,
    write_manifest,
)
from .duplicates import MIN_DETAIL_CORR, MIN_SIDE, duplicate_pairs
from .hashing import group_near_duplicates

log = logging.getLogger(__name__)


def inspect_dataset(
    path: str | Path,
    classes: tuple[str, ...] | list[str] | None = None,
    max_distance: int = 4,
    size: tuple[int, int] = (256, 256),
    cache_dir: str | Path | None = None,
    progress: bool = True,
    examples: int = 3,
    min_detail: float = MIN_DETAIL_CORR,
) -> dict:
    """Summarise a dataset: per class counts, masks, image sizes/modes, unreadable files, copies of one radiograph.

    Returns a JSON-serialisable dict (also what `lungxray data inspect --json` prints).
    """
    index = scan_dataset(path, classes)
    prep = prepare(index.samples, index.root, _detect_size(size), cache_dir, progress=progress, desc="inspecting")
    ok = np.nonzero(prep.ok)[0]
    pairs = duplicate_pairs([prep.images[prep.image_rows[i]] for i in ok], prep.hashes[ok], max_distance, min_detail,
                            _progress_printer("comparing", progress))
    pairs = [(int(ok[i]), int(ok[j]), d) for i, j, d in pairs]
    groups = group_near_duplicates(len(index.samples), pairs)
    in_pairs: set[int] = {i for p in pairs for i in p[:2]}
    per_class: dict[str, dict] = {}
    for cls in index.classes:
        idx = [i for i, s in enumerate(index.samples) if s.label == cls]
        sizes = Counter(
            "x".join(str(v) for v in reversed(prep.info[i].get("orig", [])))
            for i in idx
            if prep.ok[i] and prep.info[i].get("orig")
        )
        modes = Counter(prep.info[i].get("mode", "?") for i in idx if prep.ok[i])
        mask_sizes = Counter(
            "x".join(str(v) for v in reversed(prep.info[i]["mask_orig"]))
            for i in idx
            if prep.info[i].get("mask_orig")
        )
        member_groups = Counter(int(groups[i]) for i in idx if i in in_pairs)
        per_class[cls] = {
            "folder": index.class_dirs[cls],
            "layout": index.layout[cls],
            "images": len(idx),
            "readable": int(prep.ok[idx].sum()),
            "with_mask": sum(1 for i in idx if index.samples[i].mask_path),
            "usable_masks": int((prep.mask_rows[idx] >= 0).sum()),
            "sizes": dict(sizes.most_common(5)),
            "modes": dict(modes),
            "mask_sizes": dict(mask_sizes.most_common(3)),
            "near_duplicate_images": sum(1 for i in idx if i in in_pairs),
            "near_duplicate_groups": len(member_groups),
        }
    by_dist = sorted(pairs, key=lambda p: (-p[2], p[0]))
    return {
        "class_differences": class_differences(per_class),
        "root": str(index.root),
        "classes": list(index.classes),
        "total_images": len(index.samples),
        "per_class": per_class,
        "unreadable": [{"path": p, "error": e} for p, e in prep.failures],
        "unreadable_masks": [{"path": p, "error": e} for p, e in prep.mask_failures],
        "masks_without_image": index.masks_without_image,
        "non_image_files": index.non_image_files,
        "ignored_class_folders": index.ignored_dirs,
        "near_duplicates": {
            "max_distance_bits": max_distance,
            "min_detail_similarity": min_detail,
            "pairs": len(pairs),
            "images": len(in_pairs),
            "groups": len({int(groups[i]) for i in in_pairs}),
            "identical_pairs": sum(1 for p in pairs if p[2] >= 0.999),
            "cross_class_pairs": sum(1 for i, j, _ in pairs if index.samples[i].label != index.samples[j].label),
            "examples": [
                {"a": index.samples[i].path, "b": index.samples[j].path, "similarity": d} for i, j, d in by_dist[:examples]
            ],
        },
    }


def class_differences(per_class: dict[str, dict]) -> list[str]:
    """Warnings for properties that differ by class (size, mode/bit depth, masks): a model can learn these."""
    out = []
    for key, what in (("sizes", "image size"), ("modes", "image mode (colour, bit depth)")):
        kinds = {cls: ", ".join(sorted(c[key])) for cls, c in per_class.items() if c[key]}
        if len(set(kinds.values())) > 1:
            listing = "; ".join(f"{cls}: {v}" for cls, v in kinds.items())
            out.append(f"{what} differs by class ({listing}): a model can learn this instead of the disease. "
                       "lungxray resizes every class to one size and converts every image to 8-bit grayscale; "
                       "check overlays and the shortcut audit.")
    shares = {cls: c["with_mask"] / c["images"] for cls, c in per_class.items() if c["images"]}
    if len({round(v, 2) for v in shares.values()}) > 1:
        listing = "; ".join(f"{cls}: {v:.0%}" for cls, v in shares.items())
        out.append(f"lung masks are provided for some classes only ({listing}): a model can learn 'has a mask'. "
                   "Masked training with masks=predicted gives every class the segmenter's mask alike.")
    return out


def _detect_size(size: tuple[int, int]) -> tuple[int, int]:
    """The cached size the duplicate detector reads: `size`, unless it is too small to keep the detail."""
    return tuple(size) if min(size) >= MIN_SIDE else (256, 256)


def _progress_printer(desc: str, enabled: bool):
    """A progress(done, total) callback that logs a line at most every 10 s (nothing when disabled)."""
    if not enabled:
        return None
    state = {"t": time.monotonic()}

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - state["t"] >= 10:
            state["t"] = now
            log.info("%s: %d/%d candidate pairs", desc, done, total)

    return report


@dataclass
class SplitResult:
    rows: list[ManifestRow]
    pairs: list[tuple[int, int, int]]
    skipped: list[tuple[str, str]]
    fingerprint: str

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for r in self.rows:
            out[r.label][r.split] = out[r.label].get(r.split, 0) + 1
        return dict(out)


def split_dataset(
    path: str | Path,
    out: str | Path | None = None,
    classes: tuple[str, ...] | list[str] | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    per_class: int | None = None,
    max_distance: int = 4,
    size: tuple[int, int] = (256, 256),
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    min_detail: float = MIN_DETAIL_CORR,
) -> SplitResult:
    """Make a stratified, near-duplicate-grouped split and (optionally) write it as a manifest CSV.

    Unreadable images are left out of the manifest (and reported), so every later command can trust it.
    """
    if out is not None and Path(out).is_dir():
        raise DatasetError(f"out={out} is a folder; give the manifest's file name, e.g. {Path(out) / 'split.csv'}")
    if out is not None and Path(out).suffix.lower() != ".csv":
        raise DatasetError(f"out={out}: a manifest is a .csv file (e.g. split.csv); a name such as {Path(out).name} "
                           "would be taken for something else (an image, when it sits among the data)")
    if out is not None and Path(out).exists() and not overwrite:
        raise DatasetError(f"{out} exists; choose another out= or pass overwrite=True")
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        # before minutes of hashing and copy search, not after
        raise DatasetError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    index = scan_dataset(path, classes)
    samples = cap_per_class(index.samples, per_class, seed)
    prep = prepare(samples, index.root, _detect_size(size), cache_dir, progress=progress, desc="hashing")
    keep = np.nonzero(prep.ok)[0]
    # A mask file that cannot be read is no mask: the manifest must not pair it with its image.
    kept = [replace(samples[i], mask_path=None) if samples[i].mask_path and prep.mask_rows[i] < 0 else samples[i]
            for i in keep]
    if prep.mask_failures:
        log.warning("%d mask file(s) could not be read (first: %s); their images are listed without a mask",
                    len(prep.mask_failures), prep.mask_failures[0][0])
    rows, pairs = make_split(kept, prep.hashes[keep], fractions, seed, max_distance,
                             images=[prep.images[prep.image_rows[i]] for i in keep], min_detail=min_detail,
                             progress=_progress_printer("comparing", progress))
    assert not cross_split_pairs(rows, pairs), "copies of one radiograph split apart"
    found = {r.label for r in rows}
    missing = [c for c in index.classes if c not in found]
    if missing:
        raise DatasetError(f"{path}: no readable image of class(es) {', '.join(missing)} ({len(prep.failures)} "
                           "unreadable); a split needs every class: no manifest written")
    for part, frac in zip(("val", "test"), fractions[1:]):
        empty = [c for c in index.classes if frac > 0 and not any(r.label == c and r.split == part for r in rows)]
        if empty:
            log.warning("the %s split has no image of %s (too few images per class for fraction %g): figures on it "
                        "will not cover every class", part, ", ".join(empty), frac)
    digests = [prep.digests[i] for i in keep]
    result = SplitResult(rows, pairs, prep.failures, manifest_fingerprint(rows, digests))
    if out is not None:
        write_manifest(out, rows)
    return result


@dataclass
class SplitData:
    """A split loaded for training/evaluation: manifest rows aligned with their cached arrays."""

    root: Path
    classes: tuple[str, ...]
    rows: list[ManifestRow]
    prepared: Prepared
    fingerprint: str

    def indices(self, split: str) -> np.ndarray:
        return np.array([i for i, r in enumerate(self.rows) if r.split == split and self.prepared.ok[i]], dtype=np.int64)

    def labels(self) -> np.ndarray:
        lookup = {c: k for k, c in enumerate(self.classes)}
        return np.array([lookup[r.label] for r in self.rows], dtype=np.int64)


def load_split(
    path: str | Path,
    split_csv: str | Path | None,
    classes: tuple[str, ...] | list[str] | None = None,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    per_class: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    masks: str = "none",
) -> SplitData:
    """Load a manifest (or make a split on the fly when none is given) and decode it through the cache.

    `per_class` caps the images of a split made on the fly; a manifest's rows are used as they are (a capped
    manifest comes from `split_dataset(per_class=...)`). With `masks="predicted"` every image's mask comes from the
    shipped lung segmentation model.
    """
    index = scan_dataset(path, classes)
    if split_csv is None:
        rows = split_dataset(path, None, index.classes, seed=seed, per_class=per_class, cache_dir=cache_dir,
                             progress=progress, size=size).rows
    else:
        rows = read_manifest(split_csv, index.classes)
    missing = [r.path for r in rows if not (index.root / r.path).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} file(s) of the split are not under {index.root} (first: {missing[0]}); "
            "is data= the dataset the split was made from?"
        )
    samples = [Sample(r.path, r.label, r.mask_path) for r in rows]
    prep = prepare(samples, index.root, size, cache_dir, progress=progress, desc="loading")
    if masks == "predicted":
        from ..segment import Segmenter, segmenter_identity
        from .cache import predicted_masks

        seg = Segmenter.load()
        # Keyed by the weights and the mask settings of the U-Net's JSON: either changed, the masks are drawn again.
        prep = predicted_masks(prep, seg, segmenter_identity()[:12], cache_dir, progress)
    return SplitData(index.root, index.classes, rows, prep, manifest_fingerprint(rows, prep.digests))

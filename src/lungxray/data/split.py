"""Leakage-free, stratified train / validation / test splits written as a CSV manifest.

Copies of one radiograph (identical files, resized copies and re-exports with other contrast, sharpening or
crop; see `duplicates.py`) form one group, and a group is never divided between splits: otherwise the test
set contains copies of training images and accuracy is inflated, which is one of the flaws of the study this
project started from.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from ..errors import DatasetError
from ..utils import atomic_write_text
from .discovery import Sample
from .duplicates import MIN_DETAIL_CORR, duplicate_pairs
from .hashing import group_near_duplicates, near_duplicate_pairs

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "mask_path", "label", "split", "group")


@dataclass(frozen=True)
class ManifestRow:
    path: str
    mask_path: str | None
    label: str
    split: str
    group: int


def cap_per_class(samples: list[Sample], per_class: int | None, seed: int) -> list[Sample]:
    """Random subsample of at most `per_class` images per class (before splitting, as the study did)."""
    if per_class is None:
        return list(samples)
    if per_class < 1:
        raise DatasetError(f"per_class={per_class}: must be a positive number")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    keep: set[int] = set()
    for items in by_class.values():
        idx = rng.permutation(len(items))[:per_class]
        keep.update(id(items[i]) for i in idx)
    return [s for s in samples if id(s) in keep]


def assign_splits(
    labels: list[str],
    groups: np.ndarray,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> list[str]:
    """Give every group one split so that each class gets ~`fractions` of its images.

    Groups are shuffled per class (seeded) and dealt to test, then val, until each reaches its
    share; the rest is train. A group containing several classes is filed under its majority class.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DatasetError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[int(g)].append(i)
    class_groups: dict[str, list[int]] = defaultdict(list)
    for g, idx in sorted(members.items()):
        majority = Counter(labels[i] for i in idx).most_common(1)[0][0]
        class_groups[majority].append(g)
    out = [""] * len(labels)
    for cls in sorted(class_groups):
        gs = class_groups[cls]
        order = [gs[k] for k in rng.permutation(len(gs))]
        total = sum(len(members[g]) for g in gs)
        targets = {"test": fractions[2] * total, "val": fractions[1] * total}
        filled = {"test": 0, "val": 0}
        for g in order:
            size = len(members[g])
            split = "train"
            for name in ("test", "val"):
                # Round to the nearest: take the group while at most half of it overshoots the target.
                if filled[name] + size / 2 <= targets[name]:
                    split = name
                    break
            if split != "train":
                filled[split] += size
            for i in members[g]:
                out[i] = split
    return out


def make_split(
    samples: list[Sample],
    hashes: np.ndarray,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    max_distance: int = 4,
    images=None,
    min_detail: float = MIN_DETAIL_CORR,
    progress=None,
) -> tuple[list[ManifestRow], list[tuple[int, int, float]]]:
    """Group copies of one radiograph and assign splits. Returns manifest rows and the duplicate pairs.

    With `images` (2-D arrays aligned with `samples`) re-exports are found too (`duplicates.duplicate_pairs`);
    without, only dHash neighbours within `max_distance` bits are grouped.
    """
    if images is not None:
        pairs = duplicate_pairs(images, hashes, max_distance, min_detail, progress)
    else:
        pairs = near_duplicate_pairs(hashes, max_distance)
    groups = group_near_duplicates(len(samples), pairs)
    splits = assign_splits([s.label for s in samples], groups, fractions, seed)
    rows = [ManifestRow(s.path, s.mask_path, s.label, sp, int(g)) for s, sp, g in zip(samples, splits, groups)]
    return rows, pairs


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for r in rows:
        writer.writerow([r.path, r.mask_path or "", r.label, r.split, r.group])
    return atomic_write_text(path, buf.getvalue())


def _dataset_relative(value: str, where: str, required: bool) -> str:
    """A manifest's path as a POSIX path relative to the dataset folder (backslashes and `./` normalised); one that
    is absolute (also a Windows drive) or climbs out of the dataset is refused."""
    if not value:
        if required:
            raise DatasetError(f"{where} is empty")
        return value
    rel = PurePosixPath(value.replace("\\", "/"))
    if rel.is_absolute() or PureWindowsPath(value).drive or ".." in rel.parts:
        raise DatasetError(f"{where} {value!r} must be relative to the dataset folder and stay inside it (as "
                           "`lungxray data split` writes them)")
    return rel.as_posix()


def read_manifest(path: str | Path, classes: tuple[str, ...] | None = None) -> list[ManifestRow]:
    """Read a split manifest written by `lungxray data split`, checking columns, splits and labels."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split manifest not found (create one with `lungxray data split`)")
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's byte-order mark is not a column
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: not a lungxray split manifest (missing columns {missing})")
        rows = []
        first_line: dict[str, int] = {}
        for n, rec in enumerate(reader, start=2):
            if any(rec.get(c) is None for c in MANIFEST_COLUMNS):
                raise DatasetError(f"{path}:{n}: the row has fewer fields than the header ({', '.join(MANIFEST_COLUMNS)})")
            for column in ("path", "mask_path"):
                rec[column] = _dataset_relative(rec[column], f"{path}:{n}: {column}", required=column == "path")
            if rec["path"] in first_line:
                raise DatasetError(f"{path}:{n}: {rec['path']} is listed twice (first on line {first_line[rec['path']]}); "
                                   "each image once, or it would be counted twice")
            first_line[rec["path"]] = n
            if rec["split"] not in SPLITS:
                raise DatasetError(f"{path}:{n}: split must be one of {SPLITS}, got {rec['split']!r}")
            if classes is not None and rec["label"] not in classes:
                raise DatasetError(f"{path}:{n}: label {rec['label']!r} is not one of {list(classes)}")
            try:
                group = int(rec["group"])
            except ValueError:
                raise DatasetError(f"{path}:{n}: group must be an integer, got {rec['group']!r}") from None
            rows.append(ManifestRow(rec["path"], rec["mask_path"] or None, rec["label"], rec["split"], group))
    if not rows:
        raise DatasetError(f"{path}: manifest has no rows")
    return rows


def manifest_fingerprint(rows: list[ManifestRow], digests: list[str | None] | None = None) -> str:
    """Short stable hash of the split (paths, labels, splits and, when known, file contents)."""
    h = hashlib.sha256()
    for i, r in enumerate(rows):
        d = digests[i] if digests is not None else ""
        h.update(f"{r.path}|{r.label}|{r.split}|{d}\n".encode())
    return h.hexdigest()[:16]


def cross_split_pairs(rows: list[ManifestRow], pairs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Near-duplicate pairs whose members sit in different splits (must be empty)."""
    return [p for p in pairs if rows[p[0]].split != rows[p[1]].split]

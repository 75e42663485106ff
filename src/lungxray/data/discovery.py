"""Find a COVID-19 Radiography Database folder and list its images, each paired with its mask by name."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import DEFAULT_CLASSES
from ..errors import DatasetError
from .io import IMAGE_SUFFIXES

KNOWN_CLASSES: tuple[str, ...] = ("COVID", "Normal", "Viral Pneumonia", "Lung_Opacity")
"""Every class the database has, canonical spelling."""

# Folder names are normalised (lower case, '_'/'-' -> space) before lookup.
_ALIASES = {
    "covid": "COVID",
    "covid 19": "COVID",
    "covid19": "COVID",
    "normal": "Normal",
    "viral pneumonia": "Viral Pneumonia",
    "lung opacity": "Lung_Opacity",
}
IMAGE_DIRS = ("images",)
MASK_DIRS = ("masks", "lung masks", "lung_masks")
_MAX_SEARCH_DEPTH = 4


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def canonical_class(folder_name: str) -> str | None:
    """Map a class folder name (any supported alias) to its canonical class name, or None."""
    return _ALIASES.get(_norm(folder_name))


def resolve_classes(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Validate user class names (aliases allowed) and return canonical names in the user's order."""
    if not names:
        return tuple(DEFAULT_CLASSES)
    out: list[str] = []
    for name in names:
        canon = canonical_class(name)
        if canon is None:
            close = difflib.get_close_matches(name, KNOWN_CLASSES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DatasetError(f"unknown class {name!r}; known classes: {', '.join(KNOWN_CLASSES)}.{hint}")
        if canon in out:
            raise DatasetError(f"class {canon!r} given twice")
        out.append(canon)
    if len(out) < 2:
        raise DatasetError("at least two classes are needed")
    return tuple(out)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


@dataclass(frozen=True)
class Sample:
    """One image of the dataset. Paths are relative to the dataset root."""

    path: str
    label: str
    mask_path: str | None = None


@dataclass
class DatasetIndex:
    """What `scan_dataset` found: samples plus everything a user should be told about."""

    root: Path
    classes: tuple[str, ...]
    samples: list[Sample]
    layout: dict[str, str] = field(default_factory=dict)
    class_dirs: dict[str, str] = field(default_factory=dict)
    masks_without_image: list[str] = field(default_factory=list)
    non_image_files: list[str] = field(default_factory=list)
    ignored_dirs: list[str] = field(default_factory=list)

    def by_class(self) -> Counter:
        return Counter(s.label for s in self.samples)


def _class_dirs(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return found
    for child in children:
        canon = canonical_class(child.name)
        if canon is not None and canon not in found:
            found[canon] = child
    return found


def find_dataset_root(path: str | Path, classes: tuple[str, ...] = DEFAULT_CLASSES) -> Path:
    """Return the folder that holds the class folders: `path` itself or the nearest one below it.

    The unzipped Kaggle archive nests the class folders one or two levels down; we search
    breadth-first so the shallowest match wins. Two complete datasets at that depth (two versions side by side) are
    refused, naming both: which one is meant is the user's choice, not the alphabet's.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file; give the dataset folder (the one holding the class folders)")
    level = [root]
    best: tuple[int, Path] | None = None
    for _depth in range(_MAX_SEARCH_DEPTH + 1):
        nxt: list[Path] = []
        complete: list[Path] = []
        for folder in level:
            hits = _class_dirs(folder)
            n = sum(1 for c in classes if c in hits)
            if n == len(classes):
                complete.append(folder)
                continue
            if n >= 1 and (best is None or n > best[0]):
                best = (n, folder)
            try:
                nxt.extend(sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
            except OSError:
                continue
        unique = {p.resolve(): p for p in reversed(complete)}  # one dataset reached twice (a symlink) is one
        complete = sorted(unique.values())
        if len(complete) == 1:
            return complete[0]
        if complete:
            shown = ", ".join(str(p) for p in complete[:4]) + (" ..." if len(complete) > 4 else "")
            raise DatasetError(f"{root} holds {len(complete)} datasets ({shown}); give the one you mean")
        level = nxt
        if not level:
            break
    if best is not None:
        hits = _class_dirs(best[1])
        missing = [c for c in classes if c not in hits]
        raise DatasetError(
            f"{best[1]}: found class folders {sorted(p.name for p in hits.values())} but not {missing}; "
            f"expected folders for {list(classes)} (aliases such as 'COVID-19', 'NORMAL', 'Viral_Pneumonia' work). "
            "Use classes= to choose the classes present."
        )
    seen = sorted(p.name for p in root.iterdir())[:12] if root.is_dir() else []
    what = f"it contains {seen}" if seen else "it is empty"
    raise DatasetError(
        f"{root}: no COVID-19 Radiography Database class folders found ({what}); expected folders named "
        f"{list(classes)} (each with images/ and optionally masks/, or the images directly) here or below."
    )


def _list_images(folder: Path, non_images: list[Path]) -> list[Path]:
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            continue
        if is_image_file(p):
            out.append(p)
        elif not p.name.startswith("."):
            non_images.append(p)
    return out


def scan_dataset(path: str | Path, classes: tuple[str, ...] | list[str] | None = None) -> DatasetIndex:
    """List every image of the requested classes with its mask, paired by file name.

    Args:
        path: the dataset folder or any parent of it (e.g. the unzipped Kaggle archive).
        classes: canonical class names or aliases; default COVID, Normal, Viral Pneumonia.
    Returns:
        DatasetIndex with samples sorted by (class order, path). Images without a mask are kept
        with `mask_path=None`; masks without an image are listed, never used.
    """
    classes = resolve_classes(classes)
    root = find_dataset_root(path, classes)
    dirs = _class_dirs(root)
    index = DatasetIndex(root=root, classes=classes, samples=[])
    index.ignored_dirs = sorted(p.name for c, p in dirs.items() if c not in classes)
    non_images: list[Path] = []
    for cls in classes:
        cdir = dirs[cls]
        index.class_dirs[cls] = cdir.name
        img_dir = next((cdir / d for d in IMAGE_DIRS if (cdir / d).is_dir()), None)
        if img_dir is not None:
            index.layout[cls] = "images/ + masks/"
            images = _list_images(img_dir, non_images)
            mask_dir = next((cdir / d for d in MASK_DIRS if (cdir / d).is_dir()), None)
        else:
            index.layout[cls] = "flat"
            images = _list_images(cdir, non_images)
            mask_dir = next((cdir / d for d in MASK_DIRS if (cdir / d).is_dir()), None)
        masks: dict[str, Path] = {}
        if mask_dir is not None:
            for m in _list_images(mask_dir, non_images):
                masks[m.stem.lower()] = m
        used: set[str] = set()
        for img in images:
            key = img.stem.lower()
            mask = masks.get(key)
            if mask is not None:
                used.add(key)
            index.samples.append(
                Sample(
                    path=img.relative_to(root).as_posix(),
                    label=cls,
                    mask_path=mask.relative_to(root).as_posix() if mask is not None else None,
                )
            )
        index.masks_without_image += [m.relative_to(root).as_posix() for k, m in sorted(masks.items()) if k not in used]
    index.non_image_files = [p.relative_to(root).as_posix() for p in non_images]
    if not index.samples:
        raise DatasetError(f"{root}: class folders found but they contain no PNG/JPEG/DICOM images")
    empty = [c for c in classes if index.by_class()[c] == 0]
    if empty:
        raise DatasetError(f"{root}: no images for class(es) {empty}; use classes= to leave them out")
    return index

"""`lungxray data fill-masks`: predicted masks for the images of a dataset that have none.

Masks are written in the Radiography Database convention (256x256 grayscale PNG, lung = 255, the image's
file name) into the class's existing mask folder, or `<Class>/masks/` when it has none, so that
`scan_dataset` pairs them exactly like provided masks. An existing mask is never replaced: images that
already have one (paired by name, any extension) are left out of the plan, and each file is checked again
right before it is written.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.discovery import MASK_DIRS, scan_dataset
from ..data.io import read_image
from ..errors import ImageReadError
from ..progress import bar as progress_bar
from ..utils import atomic_write_bytes

MASK_SIZE = (256, 256)
"""The Radiography Database's mask size."""


@dataclass
class FillReport:
    """What `fill_masks` did (or, with dry_run, would do). Paths are absolute."""

    root: Path
    planned: list[tuple[Path, Path]] = field(default_factory=list)
    """(image, mask to write) for every image without a mask."""
    written: list[Path] = field(default_factory=list)
    existing: int = 0
    """Images that already had a mask (left untouched)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason): unreadable images, or masks that appeared meanwhile."""
    dry_run: bool = False


def mask_png(mask: np.ndarray) -> bytes:
    """Encode a bool mask as an 8-bit grayscale PNG, lung = 255."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def plan_fill(dataset: str | Path, classes: list[str] | None = None) -> FillReport:
    """List the images of `dataset` without a mask and where each predicted mask would go."""
    index = scan_dataset(dataset, classes)
    report = FillReport(root=index.root)
    for s in index.samples:
        if s.mask_path is not None:
            report.existing += 1
            continue
        image = index.root / s.path
        class_dir = index.root / index.class_dirs[s.label]
        mask_dir = next((class_dir / d for d in MASK_DIRS if (class_dir / d).is_dir()), class_dir / "masks")
        report.planned.append((image, mask_dir / f"{image.stem}.png"))
    # Two images of one stem (X.png, X.jpg) would write one mask: neither is filled, rather than one silently.
    by_target: dict[Path, list[Path]] = {}
    for image, target in report.planned:
        by_target.setdefault(target, []).append(image)
    shared = {t: imgs for t, imgs in by_target.items() if len(imgs) > 1}
    if shared:
        report.planned = [(i, t) for i, t in report.planned if t not in shared]
        for target, images in shared.items():
            names = " and ".join(p.name for p in images)
            report.skipped.append((str(target), f"{target}: {names} would both write this mask; neither is filled (rename one)"))
    return report


def fill_masks(
    dataset: str | Path,
    segmenter=None,
    dry_run: bool = False,
    classes: list[str] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> FillReport:
    """Predict and write a mask for every image of `dataset` that has none.

    Args:
        dataset: a Radiography Database folder (or a parent of it).
        segmenter: a `Segmenter`; default the shipped weights (not loaded for a dry run).
        dry_run: only plan; nothing is read beyond the folder listing and nothing is written.
        classes: classes to cover (default COVID, Normal, Viral Pneumonia).
    Returns:
        FillReport.
    """
    report = plan_fill(dataset, classes)
    report.dry_run = dry_run
    if dry_run or not report.planned:
        return report
    if segmenter is None:
        from .inference import Segmenter

        segmenter = Segmenter.load()
    bar = progress_bar(total=len(report.planned), desc="predicting masks", unit="img", enabled=progress)
    for start in range(0, len(report.planned), batch_size):
        chunk = report.planned[start : start + batch_size]
        images, targets = [], []
        for image_path, mask_path in chunk:
            try:
                images.append(read_image(image_path))
                targets.append(mask_path)
            except (ImageReadError, OSError) as exc:
                report.skipped.append((str(image_path), str(exc)))
        for mask, target in zip(segmenter.predict(images, size=MASK_SIZE), targets):
            if target.exists():
                report.skipped.append((str(target), f"{target}: a mask appeared meanwhile; left untouched"))
                continue
            atomic_write_bytes(target, mask_png(mask))
            report.written.append(target)
        bar.update(len(chunk))
    bar.close()
    return report

"""`lungxray segment predict`: masks (and optional overlays) for image files, written into one folder."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.discovery import is_image_file
from ..data.io import read_image
from ..errors import ConfigError, ImageReadError
from ..progress import bar as progress_bar
from ..utils import atomic_write_bytes, check_output_folder, file_identity
from .fill import mask_png
from .overlay import overlay


@dataclass
class PredictReport:
    masks: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    lung_fraction: list[float] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the image files directly inside them (sorted)."""
    out: list[Path] = []
    empty: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if is_image_file(c))
            out.extend(found)
            if not found:
                empty.append(p)
        elif p.exists():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such file or folder")
    if not out:
        where = (f": {empty[0]} holds no image files directly inside it (subfolders are not searched: give the folder "
                 "of the images, e.g. DATASET/COVID/images)") if empty else ""
        raise ConfigError(f"no image files given{where}")
    return out


def predict_files(
    paths: list[str | Path],
    out: str | Path,
    segmenter,
    with_overlay: bool = False,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    progress: bool = False,
) -> PredictReport:
    """Write `<out>/<image stem>.png` (grayscale, lung = 255) per image, and `<stem>_overlay.png` if asked.

    Args:
        paths: image files or folders of images.
        segmenter: a loaded `Segmenter`.
        size: mask (H, W); default each image's own size ((256, 256) gives the Radiography Database convention).
        overwrite: replace files already in `out` (refused by default); an input image is never replaced.
        progress: a bar on a terminal, a line every 10 s otherwise (`progress.bar`).
    Unreadable images are skipped and listed in the report.
    """
    files = expand_inputs(paths)
    out = Path(out)
    # Every file this run writes, and the input that writes it: no two inputs may share one (a.png and A.jpg; with
    # overlays also a.png's a_overlay.png and a_overlay.png's mask). Names compare without letter case.
    owner: dict[str, Path] = {}
    targets: list[Path] = []
    for f in files:
        for tail in ("", "_overlay") if with_overlay else ("",):
            t = out / f"{f.stem}{tail}.png"
            first = owner.setdefault(t.name.lower(), f)
            if first != f:
                raise ConfigError(f"{first} and {f} would both write {t}; segment them into different folders")
            targets.append(t)
    inputs = {file_identity(f) for f in files}
    for t in targets:  # never write over an input X-ray, whatever overwrite says
        if t.exists() and file_identity(t) in inputs:
            raise ConfigError(f"{t} is one of the input images; writing its mask there would destroy it: choose "
                              "another out=")
    if not overwrite:
        clash = [t for t in targets if t.exists()]
        if clash:
            raise ConfigError(f"{clash[0]} exists ({len(clash)} output file(s) would be replaced); use overwrite=True or another out=")
    created = not out.exists()
    check_output_folder(out)
    report = PredictReport()
    try:
        _segment_into(files, out, segmenter, with_overlay, size, batch_size, progress, report)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was readable (or it stopped first): no empty folder left behind
    return report


def _segment_into(files: list[Path], out: Path, segmenter, with_overlay: bool, size, batch_size: int, progress: bool,
                  report: PredictReport) -> None:
    for start in progress_bar(range(0, len(files), batch_size), desc="segmenting", unit="batch", enabled=progress):
        chunk, images = [], []
        for f in files[start : start + batch_size]:
            try:
                images.append(read_image(f))
                chunk.append(f)
            except (ImageReadError, OSError) as exc:
                report.skipped.append((str(f), str(exc)))
        masks = segmenter.predict(images, size=size) if images else []
        for f, img, mask in zip(chunk, images, masks):
            report.masks.append(atomic_write_bytes(out / f"{f.stem}.png", mask_png(mask)))
            report.lung_fraction.append(float(np.mean(mask)))
            if with_overlay:
                buf = io.BytesIO()
                Image.fromarray(overlay(img, mask), mode="RGB").save(buf, format="PNG")
                report.overlays.append(atomic_write_bytes(out / f"{f.stem}_overlay.png", buf.getvalue()))

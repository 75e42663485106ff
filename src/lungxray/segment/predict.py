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
from ..utils import atomic_write_bytes
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
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if is_image_file(c)))
        elif p.exists():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such file or folder")
    if not out:
        raise ConfigError("no image files given")
    return out


def predict_files(
    paths: list[str | Path],
    out: str | Path,
    segmenter,
    with_overlay: bool = False,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
) -> PredictReport:
    """Write `<out>/<image stem>.png` (grayscale, lung = 255) per image, and `<stem>_overlay.png` if asked.

    Args:
        paths: image files or folders of images.
        segmenter: a loaded `Segmenter`.
        size: mask (H, W); default each image's own size ((256, 256) gives the Radiography Database convention).
        overwrite: replace files already in `out` (refused by default).
    Unreadable images are skipped and listed in the report.
    """
    files = expand_inputs(paths)
    out = Path(out)
    names: dict[str, Path] = {}
    for f in files:
        key = f.stem.lower()
        if key in names and names[key] != f:
            raise ConfigError(f"{names[key]} and {f} would both write {out / (f.stem + '.png')}; segment them into different folders")
        names[key] = f
    if not overwrite:
        clash = [out / f"{f.stem}.png" for f in files if (out / f"{f.stem}.png").exists()]
        if clash:
            raise ConfigError(f"{clash[0]} exists ({len(clash)} output file(s) would be replaced); use overwrite=True or another out=")
    report = PredictReport()
    for start in range(0, len(files), batch_size):
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
    return report

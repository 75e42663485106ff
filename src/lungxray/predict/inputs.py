"""Which files a prediction run reads: folder walking, input discovery and overlay file names."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence


from ..errors import DatasetError
from ..data.discovery import MASK_DIRS
from .results import InputFile

log = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = frozenset({".md", ".txt", ".rst", ".csv", ".tsv", ".json", ".html", ".htm", ".pdf", ".xml",
                               ".yaml", ".yml", ".toml", ".log", ".py", ".ipynb"})
"""Files found while walking a folder that are documents, never X-rays: left out quietly (a README beside the
images is not an unreadable input). A file given by name is always tried; a DICOM needs no extension."""


OUTPUT_MARKERS = (("predictions.csv", "predictions.json"), ("predictions.csv", "metrics.json"), ("best.safetensors",),
                  ("best.json", "history.csv"))
"""Files that together mark a folder lungxray wrote (predict, evaluate, a training run): its PNGs are overlays and
plots, not X-rays. A second `predict .` in a folder would otherwise classify the first run's overlays."""


def lungxray_output(folder: Path) -> bool:
    """Whether `folder` holds the outputs of a lungxray command (`OUTPUT_MARKERS`)."""
    return any(all((folder / name).is_file() for name in marker) for marker in OUTPUT_MARKERS)


def _walk(folder: Path, exclude: set[Path]) -> Iterator[Path]:
    """Every non-hidden file under `folder` that is not a document, sorted, skipping mask folders, excluded folders
    and, below `folder`, folders of lungxray's own outputs (said in a log line)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or d.lower() in MASK_DIRS or (here / d).resolve() in exclude:
                continue
            if lungxray_output(here / d):
                log.warning("skipped %s: it holds lungxray's own outputs (predictions, plots or a run), not X-rays; "
                            "give it by name to read it anyway", here / d)
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() not in DOCUMENT_SUFFIXES:
                yield here / name


def discover_inputs(paths: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> list[InputFile]:
    """Expand files and folders (recursively) into the files to predict, in a stable order.

    Folders named like mask folders (`masks/`, `lung masks/`), hidden files and, inside folders, documents
    (`DOCUMENT_SUFFIXES`: README.md, notes.txt, a CSV of labels) are not inputs; everything else is, and its
    format is sniffed from content later (so a DICOM without an extension works and any other file is reported,
    not silently dropped).

    Raises:
        DatasetError: a path does not exist, or nothing was found.
    """
    given = [Path(p) for p in paths]
    if not given:
        raise DatasetError("no input given: pass image files or folders")
    missing = [p for p in given if not os.path.exists(p)]  # (Path.exists raises on names too long for the OS)
    if missing:
        shown = str(missing[0]) if len(str(missing[0])) <= 300 else str(missing[0])[:300] + "..."
        raise DatasetError(f"{shown}: no such file or folder")
    ex = {Path(e).resolve() for e in exclude}
    roots = [p.resolve() if p.is_dir() else p.resolve().parent for p in given]
    base = Path(os.path.commonpath([str(r) for r in roots]))
    seen: set[Path] = set()
    out: list[InputFile] = []
    for p in given:
        for f in (_walk(p, ex) if p.is_dir() else [p]):
            try:
                key = f.resolve()
                regular = f.is_file()
            except (RuntimeError, OSError) as exc:  # a symlink loop, a dangling or unreadable link
                log.warning("skipped %s: %s", f, exc)
                continue
            if not regular and f == p:
                log.warning("skipped %s: not a regular file (a folder, FIFO, socket or device?)", f)
            if key in seen or not regular:
                continue
            seen.add(key)
            try:
                rel = key.relative_to(base)
            except ValueError:  # a symlink pointing elsewhere
                rel = Path(f.name)
            out.append(InputFile(f, rel))
    if not out:
        raise DatasetError(f"no files found in {', '.join(str(p) for p in given)} (hidden files, mask folders and "
                           "documents such as README.md or .txt are not inputs)")
    return out


def overlay_names(files: Sequence[InputFile], taken: Iterable[str] = ()) -> dict[Path, Path]:
    """Overlay path (relative to the output folder) for each input: its relative path with `.png`.

    When inputs would share a name (`x.png` and `x.dcm`), the PNG keeps `x.png` and the others keep
    their full name (`x.dcm.png`); any remaining clash, also with the `taken` names (overlays an
    earlier run already wrote), gets `-2`, `-3`...
    """
    def key(p: Path) -> str:
        return p.as_posix().lower()  # case-insensitive: macOS/Windows file systems

    natural = [f.rel.with_suffix(".png") for f in files]
    counts: dict[str, int] = {}
    for n in natural:
        counts[key(n)] = counts.get(key(n), 0) + 1
    taken = {t.lower() for t in taken}
    out: dict[Path, Path] = {}
    for f, nat in zip(files, natural):
        first = nat if counts[key(nat)] == 1 or f.rel.suffix.lower() == ".png" else f.rel.with_name(f.rel.name + ".png")
        cand, i = first, 2
        while key(cand) in taken:
            cand, i = first.with_name(f"{first.name[:-4]}-{i}.png"), i + 1
        taken.add(key(cand))
        out[f.path] = cand
    return out


# ---------------------------------------------------------------------------------------- outputs

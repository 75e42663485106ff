"""Which images a model trained and was validated on, by file content, so `evaluate` can say when images scored as
held out are not: a user scoring the shipped model on "their own" folders of the public database usually holds
copies of its training films.

A run writes `seen.json` (the SHA-1 of each training and validation file's bytes, cut to 16 hex digits: the same
digest the image cache keys by); `lungxray ship` puts it beside the weights as `<stem>.seen.json`. Byte-identical
copies are found whatever their name; a re-export (another crop, contrast or format) is not: the split's copy
detector (`lungxray data split`) is the tool for that.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from .utils import read_json, write_json

log = logging.getLogger(__name__)

FORMAT = "lungxray-seen/1"
DIGEST_CHARS = 16
RUN_FILE = "seen.json"


def seen_path(weights: str | Path) -> Path:
    """Where a checkpoint's seen-image list lives: `RUN/seen.json` for a run's best/last weights (or a run folder),
    else `<stem>.seen.json` beside the weights (the shipped model's `classifier.seen.json`)."""
    p = Path(weights)
    if p.is_dir():
        return p / RUN_FILE
    if p.name in ("best.safetensors", "last.safetensors"):
        return p.parent / RUN_FILE
    return p.with_name(p.name.replace(".safetensors", "") + ".seen.json")


def write_seen(path: str | Path, digests: dict[str, Sequence[str | None]]) -> Path:
    """Write the digests (full SHA-1 hex, as the cache keys files) of each named split, e.g. {"train": [...]}."""
    return write_json(path, {"format": FORMAT, "digest": f"sha1 of the file's bytes, first {DIGEST_CHARS} hex digits",
                             **{name: sorted({d[:DIGEST_CHARS] for d in ds if d}) for name, ds in digests.items()}})


def write_seen_for_split(path: str | Path, split, keep: bool = False) -> Path:
    """Write the digests of a loaded split's (`data.api.SplitData`) training and validation images; with `keep`,
    added to those the list already holds (a resumed run has seen both: `train --resume --force` on changed data)."""
    digests = split.prepared.digests
    now = {s: [digests[i] for i in split.indices(s)] for s in ("train", "val")}
    before = read_seen(path) if keep else None
    if before:
        now = {s: [*now[s], *before.get(s, ())] for s in now}
    return write_seen(path, now)


def read_seen(path: str | Path) -> dict[str, set[str]] | None:
    """The seen-image digests by split, or None when there is no (readable) list."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        doc = read_json(p)
    except (OSError, ValueError):
        log.warning("%s: unreadable list of the images the model saw; the held-out check is skipped", p)
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        log.warning("%s: not a lungxray seen-image list; the held-out check is skipped", p)
        return None
    return {k: set(v) for k, v in doc.items() if isinstance(v, list)}


def seen_overlap(seen: dict[str, set[str]], digests: Sequence[str | None], paths: Sequence[str]) -> dict:
    """How many of the scored images (their full digests and paths) the model saw, by split, with examples."""
    by_split: dict[str, int] = {}
    examples: list[str] = []
    n = 0
    for d, path in zip(digests, paths):
        where = [name for name, ds in seen.items() if d and d[:DIGEST_CHARS] in ds]
        for name in where:
            by_split[name] = by_split.get(name, 0) + 1
        n += bool(where)
        if where and len(examples) < 3:
            examples.append(path)
    return {"images": n, "of": len(paths), "by_split": by_split, "examples": examples}


def describe_overlap(overlap: dict, split: str) -> str:
    """One sentence for the terminal and the report."""
    where = ", ".join(f"{n} in its {name} split" for name, n in sorted(overlap["by_split"].items()))
    return (f"{overlap['images']} of the {overlap['of']} {split} images are byte-identical to images this model "
            f"trained or was validated on ({where}; e.g. {overlap['examples'][0]}): these scores are not held-out "
            "figures")


def write_seen_for_run(run: str | Path, data: str | Path, cache_dir: str | Path | None = None,
                       progress: bool = True) -> Path:
    """Write `RUN/seen.json` from the run's own `split.csv` and the data set (for runs trained before lungxray wrote
    one; the files are hashed, through the image cache, as training hashed them)."""
    from .data.api import load_split
    from .preprocess import read_size
    from .errors import ConfigError

    run = Path(run)
    if not (run / "split.csv").is_file():
        raise ConfigError(f"{run}: not a run folder (no split.csv)")
    meta = read_json(run / "best.json") if (run / "best.json").is_file() else {}
    size = read_size(meta) if "image_size" in meta else (256, 256)  # the size the run's cache holds
    split = load_split(data, run / "split.csv", meta.get("classes"), size, cache_dir=cache_dir, progress=progress)
    return write_seen_for_split(run / RUN_FILE, split)

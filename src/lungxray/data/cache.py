"""On-disk, memory-mapped cache of decoded, resized images and masks.

Entries are keyed by the SHA-1 of the file's bytes, so a renamed or moved file is still a hit and an
edited one is a miss. Each image size has its own store: one flat uint8 file of fixed-size rows plus
a JSON index. Training reads rows through `np.memmap`, so a 15,000-image set at 256x256 (~1 GB)
never has to fit in memory and PNGs are decoded once, not once per epoch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import ImageReadError
from ..progress import bar as progress_bar
from ..utils import atomic_write_text
from .discovery import Sample
from .hashing import dhash, hash_to_hex, hex_to_hash
from .io import read_image, read_mask, resize_image, resize_mask, sniff_format, to_uint8

if TYPE_CHECKING:
    from ..segment.inference import MaskPredictor

log = logging.getLogger(__name__)
CACHE_ENV = "LUNGXRAY_CACHE"
_FORMAT_VERSION = 1
"""Version of what the image stores hold. Entries are keyed by file content and size, not by the decoding code: a
change to what `read_image`, `resize_image` or `to_uint8` produce must bump this, or old caches are silently reused
(tests/data/test_cache.py holds a digest of their output on the bundled sample and fails until it is bumped)."""


def _decoders() -> dict[str, str]:
    """The libraries that decode and resize what the stores hold. Stores are kept per set of versions (`_store_tag`):
    after an upgrade (which may change a resampling filter or a DICOM default) images are decoded again into new
    stores, and two environments sharing one cache folder never overwrite each other's."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"format": str(_FORMAT_VERSION)}
    for dist in ("pillow", "numpy", "pydicom"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


def _store_tag() -> str:
    """Short name of the decoder versions, part of every store's folder name."""
    return hashlib.sha1(json.dumps(_decoders(), sort_keys=True).encode()).hexdigest()[:8]


def default_cache_dir() -> Path:
    """`$LUNGXRAY_CACHE`, else `~/.cache/lungxray` (never inside the dataset, which may be read-only)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lungxray"


def file_digest(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ArrayStore:
    """Append-only store of (H, W) uint8 rows with a JSON index {key: {row, ...info}}."""

    def __init__(self, folder: Path, shape: tuple[int, int]):
        self.folder = Path(folder)
        self.shape = (int(shape[0]), int(shape[1]))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data_path = self.folder / "rows.u8"
        self.index_path = self.folder / "index.json"
        self.entries: dict[str, dict] = {}
        self.decoders = _decoders()  # recorded for whoever reads the index; the folder name already carries them
        if self.index_path.exists():
            doc = json.loads(self.index_path.read_text())
            if doc.get("version") == _FORMAT_VERSION and tuple(doc.get("shape", ())) == self.shape:
                self.entries = doc["entries"]
        self._row_bytes = self.shape[0] * self.shape[1]
        self._dirty = 0
        # The index is the truth, but only for rows the data file really holds: rows written after the
        # last index save (a crash) are cut off, and index entries beyond the data (a lost or truncated
        # file) are dropped so they get decoded again rather than served as black images.
        size = self.data_path.stat().st_size if self.data_path.exists() else 0
        complete = size // self._row_bytes
        if len(self.entries) > complete:
            self.entries = {k: v for k, v in self.entries.items() if v["row"] < complete}
            self._dirty = 1
        valid = len(self.entries) * self._row_bytes
        if size != valid or not self.data_path.exists():
            with open(self.data_path, "a+b") as fh:
                fh.truncate(valid)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, key: str, arr: np.ndarray, **info) -> int:
        if arr.shape != self.shape or arr.dtype != np.uint8:
            raise ValueError(f"row must be uint8 {self.shape}, got {arr.dtype} {arr.shape}")
        row = len(self.entries)
        with open(self.data_path, "ab") as fh:
            fh.write(np.ascontiguousarray(arr).tobytes())
        self.entries[key] = {"row": row, **info}
        self._dirty += 1
        if self._dirty >= 256:
            self.save()
        return row

    def save(self) -> None:
        if self._dirty or not self.index_path.exists():
            doc = {"version": _FORMAT_VERSION, "shape": list(self.shape), "decoders": self.decoders,
                   "entries": self.entries}
            atomic_write_text(self.index_path, json.dumps(doc))
            self._dirty = 0

    def array(self) -> np.ndarray:
        """Read-only memory map of all rows, shape (N, H, W)."""
        n = len(self.entries)
        if n == 0:
            return np.zeros((0, *self.shape), dtype=np.uint8)
        return np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=(n, *self.shape))


@contextmanager
def _locked(folder: Path):
    """Exclusive lock so that two processes (e.g. DDP ranks) never append to one store together."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Prepared:
    """Decoded samples, aligned with the input list. Rows are -1 where an image failed or has no mask."""

    samples: list[Sample]
    size: tuple[int, int]
    images: np.ndarray
    masks: np.ndarray
    image_rows: np.ndarray
    mask_rows: np.ndarray
    digests: list[str | None]
    hashes: np.ndarray
    info: list[dict]
    failures: list[tuple[str, str]] = field(default_factory=list)
    mask_failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        return self.image_rows >= 0


def _image_info(path: Path) -> dict:
    kind = sniff_format(path)
    if kind == "dicom":
        return {"format": "dicom", "mode": "DICOM"}
    try:
        with Image.open(path) as im:
            return {"format": kind, "mode": im.mode, "orig": [im.size[1], im.size[0]]}
    except Exception:  # header unreadable: read_image will report the real error
        return {"format": kind}


def prepare(
    samples: list[Sample],
    root: str | Path,
    size: tuple[int, int] = (256, 256),
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "decoding",
) -> Prepared:
    """Decode, resize and cache every sample (and its mask); skip and report unreadable files.

    Args:
        samples: dataset samples (paths relative to `root`).
        root: dataset root folder.
        size: (H, W) of the cached arrays.
        cache_dir: cache folder; default `default_cache_dir()`.
    Returns:
        Prepared, whose arrays are memory-mapped views of the cache.
    """
    root = Path(root)
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / f"{size[0]}x{size[1]}"
    n = len(samples)
    image_rows = np.full(n, -1, dtype=np.int64)
    mask_rows = np.full(n, -1, dtype=np.int64)
    hashes = np.zeros((n, 4), dtype=np.uint64)
    digests: list[str | None] = [None] * n
    info: list[dict] = [{} for _ in range(n)]
    failures: list[tuple[str, str]] = []
    mask_failures: list[tuple[str, str]] = []
    with _locked(folder):
        tag = _store_tag()
        img_store = ArrayStore(folder / f"images-{tag}", size)
        mask_store = ArrayStore(folder / f"masks-{tag}", size)
        bar = progress_bar(samples, desc=desc, unit="img", enabled=progress)
        for i, s in enumerate(bar):
            path = root / s.path
            try:
                key = file_digest(path)
                digests[i] = key
                if key not in img_store:
                    arr = read_image(path)
                    entry = _image_info(path)
                    entry["orig"] = [int(arr.shape[0]), int(arr.shape[1])]
                    img_store.append(key, to_uint8(resize_image(arr, size)), dhash=hash_to_hex(dhash(arr)), **entry)
                meta = img_store.entries[key]
                image_rows[i] = meta["row"]
                hashes[i] = hex_to_hash(meta["dhash"])
                info[i] = {k: v for k, v in meta.items() if k not in ("row", "dhash")}
            except (ImageReadError, OSError) as exc:
                msg = str(exc) if isinstance(exc, ImageReadError) else f"{path}: {exc}"
                failures.append((s.path, msg))
                continue
            if s.mask_path is not None:
                mpath = root / s.mask_path
                try:
                    mkey = file_digest(mpath)
                    if mkey not in mask_store:
                        m = read_mask(mpath)
                        mask_store.append(mkey, resize_mask(m, size).astype(np.uint8), orig=list(m.shape))
                    mask_rows[i] = mask_store.entries[mkey]["row"]
                    info[i]["mask_orig"] = mask_store.entries[mkey].get("orig")
                except (ImageReadError, OSError) as exc:
                    mask_failures.append((s.mask_path, str(exc)))
        img_store.save()
        mask_store.save()
    for path, msg in failures[:20]:
        log.warning("skipped unreadable image %s", msg)
    if failures:
        log.warning("skipped %d unreadable image(s) of %d", len(failures), n)
    for path, msg in mask_failures[:20]:
        log.warning("ignored unreadable mask %s", msg)
    return Prepared(
        samples=list(samples),
        size=tuple(size),
        images=img_store.array(),
        masks=mask_store.array(),
        image_rows=image_rows,
        mask_rows=mask_rows,
        digests=digests,
        hashes=hashes,
        info=info,
        failures=failures,
        mask_failures=mask_failures,
    )


def predicted_masks(prep: Prepared, segmenter: "MaskPredictor", fingerprint: str, cache_dir: str | Path | None = None,
                    progress: bool = True, batch_size: int = 32) -> Prepared:
    """Replace `prep`'s masks with the segmentation model's, for every readable image alike.

    Predicted masks are cached like images (keyed by image content and the segmenter's fingerprint),
    so they are computed once. Every image gets a predicted mask, even where a provided one exists:
    treating all classes the same way keeps "has a provided mask" from becoming a label signal.
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / f"{prep.size[0]}x{prep.size[1]}"
    rows = np.full(len(prep.samples), -1, dtype=np.int64)
    with _locked(folder):
        store = ArrayStore(folder / f"masks-predicted-{fingerprint}-{_store_tag()}", prep.size)
        # One sample per image content still missing from the store (byte-identical files share a row).
        first: dict[str, int] = {}
        for i in np.nonzero(prep.ok)[0]:
            if prep.digests[i] not in store:
                first.setdefault(prep.digests[i], int(i))
        unique = list(first)
        bar = progress_bar(range(0, len(unique), batch_size), desc="segmenting", unit="batch", enabled=progress)
        for start in bar:
            keys = unique[start : start + batch_size]
            imgs = [np.asarray(prep.images[prep.image_rows[first[k]]], dtype=np.float32) / 255.0 for k in keys]
            for k, m in zip(keys, segmenter.predict(imgs)):
                store.append(k, np.asarray(m, dtype=np.uint8))
        store.save()
        for i in np.nonzero(prep.ok)[0]:
            rows[i] = store.entries[prep.digests[i]]["row"]
    prep.masks = store.array()
    prep.mask_rows = rows
    return prep


_STORE_PREFIXES = ("images", "masks")  # images-TAG, masks-TAG, masks-predicted-FINGERPRINT-TAG (and untagged, older)


def cache_stores(cache_dir: str | Path | None = None) -> list[dict]:
    """Every image or mask store under the cache folder: {"path", "bytes", "current"}; `current` is False for a
    store of other decoder versions (another environment, or from before an upgrade) or from before stores carried
    them, which this installation never reads."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = _store_tag()
    out = []
    for size_dir in sorted(p for p in base.glob("*x*") if p.is_dir()):
        for store in sorted(p for p in size_dir.iterdir() if p.is_dir() and p.name.startswith(_STORE_PREFIXES)):
            size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
            out.append({"path": store, "bytes": size, "current": store.name.endswith(f"-{tag}")})
    return out


def prune_cache(cache_dir: str | Path | None = None) -> list[dict]:
    """Delete the stores this installation never reads (`cache_stores`' current False); returns them. Each size
    folder is locked meanwhile, so a process of this installation writing there is waited for."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    removed = []
    for store in cache_stores(base):
        if not store["current"]:
            with _locked(store["path"].parent):
                shutil.rmtree(store["path"], ignore_errors=True)
            removed.append(store)
    return removed

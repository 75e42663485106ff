"""Synthetic datasets for the dataset-layer tests: small random PNGs in the Kaggle layouts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from PIL import Image

CLASSES = ("COVID", "Normal", "Viral Pneumonia")


def noise_image(rng: np.random.Generator, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A uint8 random pattern; independent draws have dHashes ~128 bits apart (never near-duplicates)."""
    return rng.integers(0, 256, size=size, dtype=np.uint8)


def blob_mask(rng: np.random.Generator, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A bool mask with one random axis-aligned ellipse (a stand-in for a lung field)."""
    h, w = size
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def save_mask(path: Path, mask: np.ndarray) -> Path:
    """Save like the Radiography Database: RGB, lung = 255."""
    rgb = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path)
    return path


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def build_dataset(
    root: Path,
    counts: dict[str, int],
    *,
    flat: bool = False,
    masks_for: tuple[str, ...] = (),
    seed: int = 0,
    size: tuple[int, int] = (64, 64),
) -> Path:
    """Write a dataset: `root/<folder>/images/<folder>-<i>.png` (+ `masks/`), or flat `root/<folder>/<folder> (<i>).png`.

    Args:
        counts: class folder name (any alias) -> number of images.
        masks_for: folder names that also get a same-named mask per image.
    """
    rng = np.random.default_rng(seed)
    for folder, n in counts.items():
        cdir = root / folder
        cdir.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            if flat:
                name = f"{folder} ({i}).png"
                save_png(cdir / name, noise_image(rng, size))
            else:
                name = f"{folder}-{i}.png"
                save_png(cdir / "images" / name, noise_image(rng, size))
            if folder in masks_for:
                save_mask(cdir / "masks" / name, blob_mask(rng, size))
    return root


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_dataset({"COVID": 3, ...}, sub="ds", **build_dataset kwargs) -> dataset root in tmp_path."""

    def _make(counts: dict[str, int] | None = None, sub: str = "ds", **kwargs) -> Path:
        counts = counts if counts is not None else {c: 4 for c in CLASSES}
        return build_dataset(tmp_path / sub, counts, **kwargs)

    return _make


@pytest.fixture(scope="session")
def synth_100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 distinct 64x64 images per class (read-only for tests; decoded once per session via the cache)."""
    root = tmp_path_factory.mktemp("synth100")
    return build_dataset(root, {c: 100 for c in CLASSES}, seed=100)


@pytest.fixture(scope="session")
def synth() -> SimpleNamespace:
    """The helpers above, as a fixture (robust to pytest's import modes): synth.noise_image(...), etc."""
    return SimpleNamespace(
        noise_image=noise_image,
        blob_mask=blob_mask,
        save_mask=save_mask,
        save_png=save_png,
        build_dataset=build_dataset,
        classes=CLASSES,
    )

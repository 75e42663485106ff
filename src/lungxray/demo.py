"""`lungxray demo`: the whole pipeline on the bundled 30-image sample, in about a minute."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .config import load_config
from .data.api import inspect_dataset, split_dataset
from .errors import ConfigError
from .evaluate import evaluate_run
from .train import train

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
_MARKER = ".lungxray-demo"


def run_demo(out: str | Path = "runs/demo", echo: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Inspect the sample, split it, train a small CNN for a few epochs at 64 px, evaluate it, write a report.

    The numbers mean nothing (30 images); the point is to show every step and its outputs.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / _MARKER).exists():
            raise ConfigError(f"{out} exists and was not made by the demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / _MARKER).write_text("made by lungxray demo; replaced on the next demo run\n")
    if not SAMPLE.is_dir():
        raise ConfigError(f"bundled sample not found at {SAMPLE}; run the demo from a clone of the repository")
    rep = inspect_dataset(SAMPLE, progress=progress)
    echo(f"1/4 inspect: {rep['total_images']} images in {SAMPLE}")
    for cls, c in rep["per_class"].items():
        echo(f"    {cls:<16} {c['images']:>3} images, {c['with_mask']:>2} masks, {c['near_duplicate_images']} near-duplicates")
    res = split_dataset(SAMPLE, out / "split.csv", progress=progress)
    echo(f"2/4 split: {sum(1 for r in res.rows if r.split == 'train')} train / "
         f"{sum(1 for r in res.rows if r.split == 'val')} val / {sum(1 for r in res.rows if r.split == 'test')} test; "
         f"{len(res.pairs)} near-duplicate pairs kept in one split each")
    cfg = load_config(None, {"model": "cnn", "image_size": 64, "epochs": 3, "batch_size": 8, "lr": 1e-3})
    run = train(cfg, SAMPLE, out / "cnn", out / "split.csv", progress=progress)
    echo(f"3/4 train: small CNN, 3 epochs at 64x64 -> {run}")
    m = evaluate_run(run, SAMPLE, "test", n_bootstrap=200, progress=progress)
    echo(f"4/4 evaluate on {m['n']} test images: accuracy {m['accuracy']:.2f} (30 images: a smoke test, not a result)")
    echo(f"report: {run / 'eval-test' / 'report.html'}")
    return run

"""`lungxray demo`: the shipped model on the bundled 30-image sample; `--pipeline`: split, train, evaluate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .config import load_config
from .data.api import inspect_dataset, split_dataset
from .errors import ConfigError
from .evaluate import evaluate_run
from .train import train
from .utils import atomic_write_text

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
_MARKER = ".lungxray-demo"


def default_folder(base: str | Path) -> Path:
    """The demo's output folder when none was named: `base` when it is free or an earlier demo's (replaced), else
    the next free `base-2`, `base-3`, ... (a folder of the user's is never touched, nor a reason to refuse)."""
    from .utils import next_free_folder

    base = Path(base)
    if base.exists() and (not base.is_dir() or (any(base.iterdir()) and not (base / _MARKER).exists())):
        return next_free_folder(base)
    return base


def _fresh(out: Path) -> None:
    """Create `out`, replacing it only if an earlier demo made it (never a folder the user owns)."""
    if out.exists() and any(out.iterdir()):
        if not (out / _MARKER).exists():
            raise ConfigError(f"{out} exists and was not made by the demo; move it away or choose another out=")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / _MARKER, "made by lungxray demo; replaced on the next demo run\n")


def run_demo(out: str | Path = "test_results", echo: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Predict the bundled sample with the shipped model and Grad-CAM: overlays, CSV/JSON and a grid page."""
    from .predict import predict_to_folder

    out = Path(out)
    if not SAMPLE.is_dir():
        raise ConfigError(f"bundled sample not found at {SAMPLE}; run the demo from a clone of the repository")
    _fresh(out)
    # The class image folders only (the sample's README is documentation, not an input).
    inputs = sorted(p for p in SAMPLE.glob("*/images") if p.is_dir())
    res = predict_to_folder(inputs, out, cam=True, progress=progress)
    width = max(len(r["name"]) for r in res.rows)
    echo(f"{'image':<{width}}  {'prediction':<16} probability")
    for r in res.rows:
        flag = "  (flagged: not like the training X-rays)" if (r.get("ood") or {}).get("flagged") else ""
        echo(f"{r['name']:<{width}}  {r['prediction']:<16} {100 * r['probability']:5.1f}%{flag}")
    truth = [Path(r["name"]).parts[0] for r in res.rows]
    correct = sum(t == r["prediction"] for t, r in zip(truth, res.rows))
    echo(f"{correct}/{len(res.rows)} match the sample's folder labels. This is an illustration, not an evaluation: the "
         "sample comes from the development data, partly from the shipped model's training split; held-out figures "
         "are in docs/MODEL_CARD.md")
    echo(f"model: {res.model['name']} (research use only, not for clinical use)")
    echo(f"wrote {len(res.overlays)} overlays with Grad-CAM, {res.csv_path.name}, {res.json_path.name} and index.html in {out}/")
    echo(f"open {out / 'index.html'} to see them in a grid")
    return out


def run_pipeline_demo(out: str | Path = "runs/demo", echo: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Inspect the sample, split it, train a small CNN for a few epochs at 64 px, evaluate it, write a report.

    The numbers mean nothing (30 images); the point is to show every step and its outputs.
    """
    out = Path(out)
    _fresh(out)
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

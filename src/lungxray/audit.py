"""Shortcut audit: is the model reading the lungs, or the hospital the image came from?

Three measurements on a split (default: test):
- accuracy on the full image, with only the lungs kept, and with the lungs blacked out. A model that stays
  far above chance with the lungs removed is using something outside them (text markers, borders,
  exposure, patient size): a source shortcut, not the disease;
- the share of Grad-CAM mass inside the lung mask, per image, against the share of the image the lungs
  cover (what a uniform, uninformative map would give).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .data.api import load_split
from .errors import ConfigError, DatasetError
from .inference import load_batch
from .metrics import softmax
from .utils import write_json

MaskFn = Callable[[np.ndarray], np.ndarray]


def _lung_masks(data_split, idx: np.ndarray, source: str, segmenter: MaskFn | None) -> tuple[np.ndarray, list[str]]:
    """(N, H, W) float masks at the cache size: provided ones where present (unless source == "predicted")."""
    prep = data_split.prepared
    out = np.zeros((len(idx), *prep.size), dtype=np.float32)
    origin = []
    need = []
    for k, i in enumerate(idx):
        if source != "predicted" and prep.mask_rows[i] >= 0:
            out[k] = prep.masks[prep.mask_rows[i]]
            origin.append("provided")
        else:
            need.append(k)
            origin.append("predicted")
    if need:
        if source == "provided":
            raise DatasetError(f"--masks provided, but {len(need)} of {len(idx)} images have no mask; use --masks auto")
        if segmenter is None:
            from .segment import Segmenter  # lazy: only needed when masks are missing

            seg = Segmenter.load()
            segmenter = lambda imgs: np.stack(seg.predict(list(imgs)))  # noqa: E731
        images = np.asarray(prep.images[prep.image_rows[idx[need]]], dtype=np.float32) / 255.0
        for start in range(0, len(need), 32):
            chunk = need[start : start + 32]
            out[chunk] = segmenter(images[start : start + len(chunk)]).astype(np.float32)
    return out, origin


def audit_run(
    run: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    masks: str = "auto",
    segmenter: MaskFn | None = None,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Run the shortcut audit and write audit.json, audit.png and report.html (default `<run>/audit-<split>`).

    An existing, non-empty output folder is refused before any work unless `overwrite`.
    """
    from .predict import make_gradcam

    if masks not in ("auto", "provided", "predicted"):
        raise ConfigError(f"--masks must be auto, provided or predicted, got {masks!r}")
    run = Path(run)
    out = Path(out) if out else run / f"audit-{split}"
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite or choose another --out")
    model, meta = load_checkpoint(run)
    size = tuple(meta["image_size"])
    ds = load_split(data, run / "split.csv", meta["classes"], size, cache_dir=cache_dir, progress=progress)
    idx = ds.indices(split)
    if len(idx) == 0:
        raise DatasetError(f"no readable images in the {split!r} split")
    y = ds.labels()[idx]
    lung, origin = _lung_masks(ds, idx, masks, segmenter)
    temperature = float(meta.get("temperature", 1.0))
    cam = make_gradcam(model, model.spec.cam_layer) if model.spec.cam_layer else None

    preds = {"full": [], "lungs_only": [], "lungs_removed": []}
    cam_mass = []
    for start in range(0, len(idx), batch_size):
        sl = slice(start, start + batch_size)
        x = load_batch(ds, idx[sl], "none")[:, 0]
        m = torch.from_numpy(lung[sl])
        if meta.get("masks") == "provided":
            x = x * m  # a masked model's normal input is the lungs only
        variants = {"full": x, "lungs_only": x * m, "lungs_removed": x * (1 - m)}
        with torch.no_grad():
            for name, v in variants.items():
                preds[name].append(softmax(model(v.unsqueeze(1)).numpy(), temperature))
        if cam is not None:
            # Each image explained for its own predicted class, heat scaled to [0, 1] (1 = most important).
            top = torch.as_tensor(preds["full"][-1].argmax(1))
            with torch.enable_grad():
                heat = cam(x.unsqueeze(1), class_idx=top).detach()[:, 0].float().numpy()
            total = heat.reshape(len(heat), -1).sum(1)
            inside = (heat * lung[sl]).reshape(len(heat), -1).sum(1)
            cam_mass.append(np.where(total > 0, inside / np.maximum(total, 1e-12), np.nan))
    probs = {k: np.concatenate(v) for k, v in preds.items()}
    acc = {k: float((p.argmax(1) == y).mean()) for k, p in probs.items()}
    chance = float(np.bincount(y, minlength=len(meta["classes"])).max() / len(y))
    per_class = {
        name: {
            cls: float((p.argmax(1)[y == c] == c).mean()) if (y == c).any() else None
            for c, cls in enumerate(meta["classes"])
        }
        for name, p in probs.items()
    }
    lung_fraction = lung.reshape(len(lung), -1).mean(1)
    result = {
        "run": run.name,
        "model": meta["model"],
        "split": split,
        "n": int(len(idx)),
        "masks": {"requested": masks, "provided": origin.count("provided"), "predicted": origin.count("predicted")},
        "accuracy": acc,
        "recall_per_class": per_class,
        "chance_accuracy": chance,
        "lung_area_fraction_mean": float(lung_fraction.mean()),
    }
    if cam_mass:
        mass = np.concatenate(cam_mass)
        ok = np.isfinite(mass)
        result["gradcam_mass_in_lungs"] = {
            "mean": float(mass[ok].mean()),
            "median": float(np.median(mass[ok])),
            "p10": float(np.percentile(mass[ok], 10)),
            "p90": float(np.percentile(mass[ok], 90)),
            "share_of_images_above_lung_area": float((mass[ok] > lung_fraction[ok]).mean()),
            "cam_layer": model.spec.cam_layer,
        }
    margin = acc["lungs_removed"] - chance
    result["verdict"] = (
        f"With the lungs blacked out the model still scores {acc['lungs_removed']:.1%} (chance {chance:.1%}): "
        "it uses image content outside the lungs (source, markers, borders, exposure) as well as the lungs."
        if margin > 0.15
        else f"With the lungs blacked out accuracy falls to {acc['lungs_removed']:.1%} (chance {chance:.1%}): "
        "no strong evidence of a shortcut outside the lungs."
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", result)
    png = _plot(result, np.concatenate(cam_mass) if cam_mass else None, lung_fraction, out / "audit.png")
    from .report.html import write_report

    rows = [[k.replace("_", " "), f"{v:.1%}"] for k, v in acc.items()] + [["chance (majority class)", f"{chance:.1%}"]]
    write_report(out / "report.html", title=f"Shortcut audit: {run.name} on {split}", sections=[
        {"heading": "Verdict", "text": result["verdict"]},
        {"heading": "Accuracy by input", "table": {"columns": ["input", "accuracy"], "rows": rows}},
        {"heading": "Figures", "images": [png]},
    ])
    return result


def _plot(result: dict, mass: np.ndarray | None, lung_fraction: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .utils import atomic_write_bytes
    import io

    fig, axes = plt.subplots(1, 2 if mass is not None else 1, figsize=(11 if mass is not None else 5.5, 4.2), squeeze=False)
    ax = axes[0, 0]
    names = list(result["accuracy"])
    vals = [result["accuracy"][k] for k in names]
    bars = ax.bar([n.replace("_", " ") for n in names], vals, color=["#4c72b0", "#55a868", "#c44e52"])
    ax.axhline(result["chance_accuracy"], ls="--", c="gray", label="chance (majority class)")
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.1%}", ha="center")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy with lungs kept / removed")
    ax.legend(loc="lower right")
    if mass is not None:
        ax = axes[0, 1]
        ok = np.isfinite(mass)
        ax.hist(mass[ok], bins=20, range=(0, 1), alpha=0.7, label="Grad-CAM mass inside lungs")
        ax.hist(lung_fraction, bins=20, range=(0, 1), alpha=0.5, label="lung share of image (uniform map)")
        ax.set_xlabel("fraction")
        ax.set_ylabel("images")
        ax.set_title(f"Grad-CAM mass in lungs: mean {np.nanmean(mass):.2f}")
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path

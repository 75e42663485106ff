"""Shortcut audit: is the model reading the lungs, or the hospital the image came from?

Measurements on a split (default: test), each accuracy with a 95% bootstrap interval, per-class recall and the
COVID-versus-rest AUC:
- a whole-image model: accuracy on the full image, with only the lungs kept, and with the lungs blacked out.
  A model that stays far above chance with the lungs removed is using something outside them (text markers,
  borders, exposure, patient size): a source shortcut, not the disease;
- a lung-only model (trained on masked lungs): its normal input, the same crop with the lungs removed (what is
  left outside the grown mask), and the lungs with their texture removed (outline and mean brightness kept):
  what the model can still tell from the lungs' shape and exposure alone;
- the share of Grad-CAM mass inside the lung mask, per image, against the share of the image the lungs
  cover (what a uniform, uninformative map would give).

An ablation that collapses onto one class, or sits at chance, says only that the model has nothing to go on:
the verdict calls that inconclusive rather than evidence that no shortcut exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .progress import bar as progress_bar
from .data.api import load_split
from .errors import ConfigError, DatasetError
from .inference import load_batch
from .preprocess import LungView, lung_view, read_size
from .metrics import softmax
from .utils import check_output_folder, next_free_folder, refuse_taken_folder, write_json

if TYPE_CHECKING:
    from .segment.inference import MaskPredictor

def _lung_masks(data_split, idx: np.ndarray, source: str, segmenter: MaskPredictor | None,
                progress: bool = False) -> tuple[np.ndarray, list[str]]:
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
            raise DatasetError(f"masks=provided, but {len(need)} of {len(idx)} images have no mask; use masks=auto")
        if segmenter is None:
            from .segment import Segmenter  # lazy: only needed when masks are missing

            segmenter = Segmenter.load()
        images = np.asarray(prep.images[prep.image_rows[idx[need]]], dtype=np.float32) / 255.0
        for start in progress_bar(range(0, len(need), 32), desc="segmenting", unit="batch", enabled=progress):
            chunk = need[start : start + 32]
            out[chunk] = np.stack(segmenter.predict(list(images[start : start + len(chunk)]))).astype(np.float32)
    return out, origin


def audit_run(
    run: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    masks: str = "auto",
    segmenter: MaskPredictor | None = None,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Run the shortcut audit and write audit.json, audit.png and report.html (default `<run>/audit-<split>`, or
    `-2`, `-3`, ... when that one is taken; the returned dict's "out" says which).

    An existing, non-empty output folder is refused before any work unless `overwrite`.
    """
    from .predict import make_gradcam

    if masks not in ("auto", "provided", "predicted"):
        raise ConfigError(f"masks={masks}: must be auto, provided or predicted")
    run = Path(run)
    out = Path(out) if out else next_free_folder(run / f"audit-{split}")  # audit-test, audit-test-2, ...
    refuse_taken_folder(out, overwrite, "the audit writes audit.json, a plot and a report")
    model, meta = load_checkpoint(run)  # first: a mistyped run must not leave an audit folder behind
    check_output_folder(out)  # a folder that cannot be written fails now, not after minutes of work
    ds = load_split(data, run / "split.csv", meta["classes"], read_size(meta), cache_dir=cache_dir, progress=progress)
    idx = ds.indices(split)
    if len(idx) == 0:
        raise DatasetError(f"no readable images in the {split!r} split")
    y = ds.labels()[idx]
    if masks == "auto" and meta.get("masks") == "predicted":
        masks = "predicted"  # a model trained on predicted masks is audited with the masks it sees in use
    lung, origin = _lung_masks(ds, idx, masks, segmenter, progress)
    temperature = float(meta.get("temperature", 1.0))
    cam = make_gradcam(model, model.spec.cam_layer) if model.spec.cam_layer else None

    masked = meta.get("masks", "none") != "none"
    view = LungView.from_meta(meta) if masked else LungView()
    names = ("model_input", "lungs_removed", "lung_texture_removed") if masked else ("full", "lungs_only", "lungs_removed")
    preds: dict[str, list] = {k: [] for k in names}
    cam_mass, lung_share = [], []
    for start in progress_bar(range(0, len(idx), batch_size), desc=f"auditing {split}", unit="batch", enabled=progress):
        sl = slice(start, start + batch_size)
        x = load_batch(ds, idx[sl], "none")
        m = torch.from_numpy(lung[sl]).unsqueeze(1)
        if masked:
            variants = {"model_input": lung_view(x, m, view), "lungs_removed": lung_view(x, m, view, mode="remove"),
                        "lung_texture_removed": lung_view(x, m, view, mode="flat")}
            # The lung mask as predicted (not grown), cropped into the model's frame: lung_view grows only the mask
            # it is given, so multiplying the mask by its grown self leaves the ungrown one. Grad-CAM mass is measured
            # inside the lungs themselves, not inside the 4 px rim the model also sees.
            frame_mask = lung_view(m, m, view)
        else:
            variants = {"full": x, "lungs_only": x * m, "lungs_removed": x * (1 - m)}
            frame_mask = m
        with torch.no_grad():
            for name, v in variants.items():
                preds[name].append(softmax(model(v).numpy(), temperature))
        lung_share.append(frame_mask.reshape(len(frame_mask), -1).mean(1).numpy())
        if cam is not None:
            # Each image explained for its own predicted class, heat scaled to [0, 1] (1 = most important).
            first = variants[names[0]]
            top = torch.as_tensor(preds[names[0]][-1].argmax(1))
            with torch.enable_grad():
                heat = cam(first, class_idx=top).detach()[:, 0].float().numpy()
            total = heat.reshape(len(heat), -1).sum(1)
            inside = (heat * frame_mask[:, 0].numpy()).reshape(len(heat), -1).sum(1)
            cam_mass.append(np.where(total > 0, inside / np.maximum(total, 1e-12), np.nan))
    probs = {k: np.concatenate(v) for k, v in preds.items()}
    classes = list(meta["classes"])
    acc = {k: float((p.argmax(1) == y).mean()) for k, p in probs.items()}
    chance = float(np.bincount(y, minlength=len(classes)).max() / len(y))
    per_class = {
        name: {cls: float((p.argmax(1)[y == c] == c).mean()) if (y == c).any() else None for c, cls in enumerate(classes)}
        for name, p in probs.items()
    }
    rng = np.random.default_rng(0)
    ci = {k: _accuracy_ci(p.argmax(1) == y, rng) for k, p in probs.items()}
    top_share = {k: float(np.bincount(p.argmax(1), minlength=len(classes)).max() / len(p)) for k, p in probs.items()}
    covid_auc = {k: _covid_auc(y, p, classes) for k, p in probs.items()}
    lung_fraction = np.concatenate(lung_share)
    result = {
        "run": run.name,
        "model": meta["model"],
        "split": split,
        "n": int(len(idx)),
        "lung_only_model": masked,
        "lung_view": view.to_dict() if masked else None,
        "masks": {"requested": masks, "provided": origin.count("provided"), "predicted": origin.count("predicted")},
        "accuracy": acc,
        "accuracy_ci95": ci,
        "recall_per_class": per_class,
        "covid_vs_rest_auc": covid_auc,
        "largest_predicted_class_share": top_share,
        "chance_accuracy": chance,
        "lung_area_fraction_mean": float(lung_fraction.mean()),
    }
    mass = np.concatenate(cam_mass) if cam_mass else np.zeros(0)
    ok = np.isfinite(mass)
    if ok.any():  # every map empty (all-zero Grad-CAM): no mass to report
        result["gradcam_mass_in_lungs"] = {
            "mean": float(mass[ok].mean()),
            "median": float(np.median(mass[ok])),
            "p10": float(np.percentile(mass[ok], 10)),
            "p90": float(np.percentile(mass[ok], 90)),
            "share_of_images_above_lung_area": float((mass[ok] > lung_fraction[ok]).mean()),
            "cam_layer": model.spec.cam_layer,
        }
    result["verdict"] = verdict(result)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", result)
    png = _plot(result, mass if ok.any() else None, lung_fraction, out / "audit.png")
    from .report.html import write_report

    rows = [[k.replace("_", " "), f"{v:.1%}", "[{:.1%}, {:.1%}]".format(*ci[k]),
             "" if covid_auc[k] is None else f"{covid_auc[k]:.3f}",
             ", ".join(f"{c} {r:.2f}" for c, r in per_class[k].items() if r is not None)] for k, v in acc.items()]
    rows.append(["chance (majority class)", f"{chance:.1%}", "", "0.500", ""])
    write_report(out / "report.html", title=f"Shortcut audit: {run.name} on {split}", sections=[
        {"heading": "Verdict", "text": result["verdict"]},
        {"heading": "Accuracy by input", "table": {"columns": ["input", "accuracy", "95% CI", "COVID-vs-rest AUC",
                                                                "recall per class"], "rows": rows}},
        {"heading": "Figures", "images": [png]},
    ])
    return {**result, "out": str(out)}  # where it was written (RUN/audit-SPLIT, -2, ... without --out)


def _accuracy_ci(correct: np.ndarray, rng: np.random.Generator, n_boot: int = 1000) -> list[float]:
    """95% percentile bootstrap interval of the mean of a 0/1 vector."""
    if len(correct) == 0:
        return [float("nan"), float("nan")]
    means = correct[rng.integers(0, len(correct), size=(n_boot, len(correct)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _covid_auc(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> float | None:
    """ROC AUC of P(COVID) for COVID against every other class (None without a COVID class or without both kinds)."""
    from sklearn.metrics import roc_auc_score

    if "COVID" not in classes:
        return None
    c = classes.index("COVID")
    positive = y == c
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, probs[:, c]))


def verdict(r: dict) -> str:
    """One paragraph that says what the ablations show, and when they cannot show anything."""
    chance = r["chance_accuracy"]

    def informative(name: str) -> bool:
        # Above chance by more than 5 points (lower CI bound), and not just one class predicted for nearly all.
        return r["accuracy_ci95"][name][0] > chance + 0.05 and r["largest_predicted_class_share"][name] < 0.9

    def describe(name: str) -> str:
        a, (lo, hi) = r["accuracy"][name], r["accuracy_ci95"][name]
        share = r["largest_predicted_class_share"][name]
        extra = f", {share:.0%} of images given one class" if share >= 0.9 else ""
        return f"{a:.1%} [{lo:.1%}, {hi:.1%}]{extra}"

    removed = "lungs_removed"
    if r.get("lung_only_model"):
        flat = "lung_texture_removed"
        parts = [f"Lung-only model. With the lungs removed from its input: {describe(removed)} (chance {chance:.1%})."]
        if informative(removed):
            parts.append("It still finds something outside the (grown) lung mask: the crop's framing or the border "
                         "around the lungs carries signal; look at the Grad-CAM overlays.")
        else:
            parts.append("Nothing outside the lungs reaches it, as designed.")
        parts.append(f"With the lungs' texture removed (outline and mean brightness kept): {describe(flat)}.")
        if informative(flat):
            parts.append("Lung shape, size and exposure alone still separate the classes: part of what the model "
                         "uses is anatomy (age, body size) and exposure, which can differ by source, not only disease.")
        else:
            parts.append("Without texture it has nothing to go on: it relies on what is inside the lungs.")
        return " ".join(parts)
    lungs = "lungs_only"
    if informative(removed):
        return (f"With the lungs blacked out the model still scores {describe(removed)} (chance {chance:.1%}): it uses "
                "image content outside the lungs (source, markers, borders, exposure) as well as the lungs.")
    if not informative(lungs):
        return (f"Inconclusive: with the lungs removed the model scores {describe(removed)} and with only the lungs "
                f"{describe(lungs)} (chance {chance:.1%}). Both ablated inputs are unlike anything it was trained on, "
                "so it has nothing to go on either way; this neither shows nor rules out a shortcut. "
                "Train a lung-only model (configs/lungs-enc128.toml, or configs/lungs-prog.toml from scratch) to take the outside of the lungs away.")
    return (f"With the lungs blacked out accuracy falls to {describe(removed)} (chance {chance:.1%}) while the lungs "
            f"alone give {describe(lungs)}: no evidence of a shortcut outside the lungs.")


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
    bars = ax.bar([n.replace("_", "\n") for n in names], vals, color=["#4c72b0", "#55a868", "#c44e52"])
    for b, name in zip(bars, names):
        lo, hi = result["accuracy_ci95"][name]
        ax.plot([b.get_x() + b.get_width() / 2] * 2, [lo, hi], c="black", lw=1.5)
    ax.axhline(result["chance_accuracy"], ls="--", c="gray", label="chance (majority class)")
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.1%}", ha="center")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy by input (bars: 95% CI)")
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

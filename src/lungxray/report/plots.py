"""Report figures: training curves, confusion matrix, ROC, reliability, layer table, comparison.

Every `plot_*` function writes exactly one PNG atomically (temporary file in the target folder,
then `os.replace`), so a crash mid-save never leaves a truncated image that looks valid, and
returns the output path. Numbers shown in titles and legends come from `lungxray.metrics`, so a
figure never disagrees with `metrics.json`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

# Headless by design: reports are made on training servers and in CI without a display.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import ArrayLike, NDArray  # noqa: E402

from .. import metrics as _metrics  # noqa: E402
from ..utils import atomic_write_bytes  # noqa: E402

__all__ = [
    "macro_roc_curve",
    "plot_comparison",
    "plot_confusion",
    "plot_history",
    "plot_reliability",
    "plot_roc",
]

DPI = 110
_FPR_GRID = np.linspace(0.0, 1.0, 201)


def _save(fig: Figure, out_png: str | Path) -> Path:
    """Save `fig` as PNG atomically and close it.

    Args:
        fig: The figure to write.
        out_png: Destination path; its folder is created if needed.

    Returns:
        The destination path.
    """
    out = Path(out_png)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())


def _to_float(value: Any) -> float:
    """Convert a CSV cell (str/number/None/"") to float, NaN when missing."""
    if value is None:
        return float("nan")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return float("nan")
    return float(value)


# --------------------------------------------------------------------------------------------
# Training history
# --------------------------------------------------------------------------------------------


def plot_history(history: Sequence[Mapping[str, Any]], out_png: str | Path) -> Path:
    """Plot loss and accuracy curves (train vs val) and mark the best-val-loss epoch.

    Args:
        history: One dict per epoch with keys epoch, train_loss, val_loss, train_acc, val_acc and
            optionally lr; values may be strings as read by `csv.DictReader`.
        out_png: Output PNG path.

    Returns:
        The output path.
    """
    return _save(history_figure(history), out_png)


def history_figure(history: Sequence[Mapping[str, Any]]) -> Any:
    """The figure `plot_history` saves: loss and accuracy per epoch, whole-number epoch ticks."""
    from matplotlib.ticker import MaxNLocator
    if not history:
        raise ValueError("history is empty: nothing to plot")
    required = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc")
    missing = [k for k in required if k not in history[0]]
    if missing:
        raise ValueError(f"history rows lack column(s) {missing}; have {sorted(history[0])}")
    col = {k: np.array([_to_float(r.get(k)) for r in history]) for k in (*required, "lr")}
    epoch = col["epoch"]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_loss.plot(epoch, col["train_loss"], "o-", ms=3, label="train")
    ax_loss.plot(epoch, col["val_loss"], "o-", ms=3, label="validation")
    ax_acc.plot(epoch, col["train_acc"], "o-", ms=3, label="train")
    ax_acc.plot(epoch, col["val_acc"], "o-", ms=3, label="validation")

    val_loss = col["val_loss"]
    if np.any(np.isfinite(val_loss)):
        best = int(np.nanargmin(val_loss))
        label = f"best val loss (epoch {epoch[best]:g})"
        for ax in (ax_loss, ax_acc):
            ax.axvline(epoch[best], color="0.4", ls="--", lw=1, label=label)
        ax_loss.plot(epoch[best], val_loss[best], "*", ms=14, color="C3", zorder=5)
        if np.isfinite(col["val_acc"][best]):
            ax_acc.plot(epoch[best], col["val_acc"][best], "*", ms=14, color="C3", zorder=5)

    lr = col["lr"]
    if np.any(np.isfinite(lr) & (lr > 0)):
        # The schedule explains kinks in the curves, but on its own (log) axis to stay readable.
        ax_lr = ax_loss.twinx()
        ax_lr.plot(epoch, lr, color="0.6", lw=1, ls=":", label="learning rate")
        ax_lr.set_yscale("log")
        ax_lr.set_ylabel("Learning rate", color="0.45")
        ax_lr.tick_params(axis="y", colors="0.45", labelsize=8)

    ax_loss.set(title="Loss", xlabel="Epoch", ylabel="Cross-entropy loss")
    ax_acc.set(title="Accuracy", xlabel="Epoch", ylabel="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    fig.suptitle("Training history")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers, even for 1-3 epoch runs
    if len(epoch) == 1:
        for ax in (ax_loss, ax_acc):
            ax.set_xlim(epoch[0] - 1, epoch[0] + 1)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------------


def plot_confusion(cm: ArrayLike, classes: Sequence[str], out_png: str | Path) -> Path:
    """Plot the confusion matrix as counts and row-normalised (recall per true class).

    Args:
        cm: Counts (C, C), rows = true class, columns = predicted class.
        classes: The C class names.
        out_png: Output PNG path.

    Returns:
        The output path.
    """
    counts = np.asarray(cm, dtype=np.float64)
    c = len(classes)
    if counts.shape != (c, c):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({c}, {c})")
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)

    from sklearn.metrics import ConfusionMatrixDisplay  # scikit-learn's annotated matrix (text colour follows the cell)

    fig, (ax_n, ax_r) = plt.subplots(1, 2, figsize=(4.2 * 2 + 1.5, 4.2))
    for ax, values, fmt, vmax in ((ax_n, counts, ".0f", max(float(counts.max()), 1.0)), (ax_r, norm, ".2f", 1.0)):
        ConfusionMatrixDisplay(values, display_labels=list(classes)).plot(
            ax=ax, cmap="Blues", values_format=fmt, xticks_rotation=30, im_kw={"vmin": 0.0, "vmax": vmax})
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
    ax_n.set_title(f"Counts (N = {int(counts.sum())})")
    ax_r.set_title("Row-normalised (per true class)")
    fig.suptitle("Confusion matrix")
    fig.tight_layout()
    return _save(fig, out_png)


# --------------------------------------------------------------------------------------------
# ROC
# --------------------------------------------------------------------------------------------


def plot_roc(
    y_true: ArrayLike, probs: ArrayLike, classes: Sequence[str], out_png: str | Path
) -> tuple[Path, float | None]:
    """Plot one one-vs-rest ROC curve per class; the title gives the macro AUC.

    Args:
        y_true: Class indices (N,).
        probs: Class probabilities (N, C).
        classes: The C class names.
        out_png: Output PNG path.

    Returns:
        (output path, macro AUC) where macro AUC is the mean of the defined per-class AUCs, the
        same number as `classification_metrics(...)["macro"]["auc"]` (None if no AUC is defined).
    """
    y, p = _metrics._check_arrays(y_true, probs, len(classes))
    aucs = _metrics.one_vs_rest_auc(y, p)
    macro = _metrics._mean_defined(aucs)

    fig, ax = plt.subplots(figsize=(5.8, 5.2))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance (AUC = 0.5)")
    for k, name in enumerate(classes):
        if aucs[k] is None:
            # Plot nothing rather than a misleading curve, but keep the class in the legend.
            ax.plot([], [], color=f"C{k}", label=f"{name} (AUC undefined: one label only)")
            continue
        fpr, tpr = _metrics.roc_curve(y == k, p[:, k])
        ax.plot(fpr, tpr, color=f"C{k}", lw=2, label=f"{name} (AUC = {aucs[k]:.3f})")
    macro_txt = f"{macro:.3f}" if macro is not None else "undefined"
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="False positive rate (1 - specificity)",
           ylabel="True positive rate (sensitivity)",
           title=f"ROC, one-vs-rest (macro AUC = {macro_txt})")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_png), macro


def _interp_roc(
    fpr: NDArray[np.float64], tpr: NDArray[np.float64], grid: NDArray[np.float64]
) -> NDArray[np.float64]:
    """TPR of a ROC curve at each grid FPR, taking the top of vertical segments.

    np.interp is undefined for repeated x values, and ROC curves repeat FPR on every vertical
    step, so interpolate from the last point at or left of each grid value instead.
    """
    j = np.searchsorted(fpr, grid, side="right") - 1
    j = np.clip(j, 0, fpr.size - 1)
    nxt = np.minimum(j + 1, fpr.size - 1)
    span = fpr[nxt] - fpr[j]
    frac = np.divide(grid - fpr[j], span, out=np.zeros_like(grid), where=span > 0)
    return tpr[j] + frac * (tpr[nxt] - tpr[j])


def macro_roc_curve(
    y_true: ArrayLike, probs: ArrayLike, grid: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], float | None]:
    """Macro-average ROC curve: mean TPR of the per-class one-vs-rest curves on a common FPR grid.

    Args:
        y_true: Class indices (N,).
        probs: Class probabilities (N, C).
        grid: FPR values to evaluate at; default 201 points on [0, 1].

    Returns:
        (fpr grid, mean tpr, macro AUC as in `classification_metrics`). Classes whose AUC is
        undefined are left out of the mean.
    """
    y, p = _metrics._check_arrays(y_true, probs)
    g = _FPR_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    aucs = _metrics.one_vs_rest_auc(y, p)
    curves = [
        _interp_roc(*_metrics.roc_curve(y == k, p[:, k]), g)
        for k in range(p.shape[1])
        if aucs[k] is not None
    ]
    mean_tpr = np.mean(curves, axis=0) if curves else np.full_like(g, np.nan)
    return g, mean_tpr, _metrics._mean_defined(aucs)


# --------------------------------------------------------------------------------------------
# Reliability
# --------------------------------------------------------------------------------------------


def plot_reliability(
    y_true: ArrayLike, probs: ArrayLike, out_png: str | Path, n_bins: int = 15
) -> Path:
    """Reliability diagram (accuracy vs confidence per bin) with a confidence histogram.

    Args:
        y_true: Class indices (N,).
        probs: Class probabilities (N, C).
        out_png: Output PNG path.
        n_bins: Number of equal-width bins (same binning as the reported ECE).

    Returns:
        The output path.
    """
    bins = _metrics.reliability_bins(y_true, probs, n_bins)
    edges = np.asarray(bins["edges"])
    width = np.diff(edges)
    centres = edges[:-1] + width / 2
    count = np.asarray(bins["count"])
    filled = count > 0
    acc = np.array([a if a is not None else 0.0 for a in bins["accuracy"]])
    conf = np.array([c if c is not None else 0.0 for c in bins["confidence"]])

    fig, (ax, ax_h) = plt.subplots(
        2, 1, figsize=(5.6, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
    ax.bar(centres[filled], acc[filled], width=width[filled], color="C0", alpha=0.8,
           edgecolor="black", lw=0.5, label="accuracy")
    # The hatched gap shows over-confidence (bar below diagonal) or under-confidence (above).
    ax.bar(centres[filled], conf[filled] - acc[filled], bottom=acc[filled], width=width[filled],
           color="none", edgecolor="C3", hatch="//", lw=0.5, label="gap to mean confidence")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy",
           title=f"Reliability diagram (ECE = {bins['ece']:.3f}, {n_bins} bins)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)

    ax_h.bar(centres, count, width=width, color="0.5", edgecolor="black", lw=0.5)
    ax_h.set(xlabel="Top-class confidence", ylabel="Samples")
    ax_h.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_png)


# --------------------------------------------------------------------------------------------
# Layer table
# --------------------------------------------------------------------------------------------


def plot_comparison(
    results: Sequence[Mapping[str, Any]],
    out_png: str | Path,
    reference: Mapping[str, float] | None = None,
) -> Path:
    """Compare models: macro-average ROC curves (left) and accuracy with 95 % CIs (right).

    Args:
        results: Dicts {name, y_true, probs, classes, accuracy, accuracy_ci}; accuracy and
            accuracy_ci may be omitted (accuracy is then computed, the error bar left out).
        out_png: Output PNG path.
        reference: Optional {model name: accuracy reported by the original study}, drawn as
            hollow markers beside the bars; values > 1 are read as percentages.

    Returns:
        The output path.
    """
    if not results:
        raise ValueError("results is empty: nothing to compare")
    fig, (ax_roc, ax_acc) = plt.subplots(1, 2, figsize=(12, 5.2))
    ax_roc.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")

    names: list[str] = []
    accs: list[float] = []
    errs: list[tuple[float, float]] = []
    for i, res in enumerate(results):
        name = str(res["name"])
        y, p = _metrics._check_arrays(res["y_true"], res["probs"], len(res["classes"]))
        fpr, tpr, macro = macro_roc_curve(y, p)
        auc_txt = f"{macro:.3f}" if macro is not None else "undefined"
        ax_roc.plot(fpr, tpr, color=f"C{i}", lw=2, label=f"{name} (macro AUC = {auc_txt})")
        acc = res.get("accuracy")
        acc = float(np.mean(p.argmax(axis=1) == y)) if acc is None else float(acc)
        ci = res.get("accuracy_ci")
        names.append(name)
        accs.append(acc)
        # Clamp at 0 so rounding in a stored CI cannot produce a negative error-bar length.
        errs.append((max(acc - ci[0], 0.0), max(ci[1] - acc, 0.0)) if ci else (np.nan, np.nan))

    ax_roc.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="False positive rate",
               ylabel="True positive rate", title="Macro-average ROC (one-vs-rest)")
    ax_roc.set_aspect("equal")
    ax_roc.grid(alpha=0.3)
    ax_roc.legend(loc="lower right", fontsize=9)

    x = np.arange(len(names))
    colors = [f"C{i}" for i in range(len(names))]
    ax_acc.bar(x, accs, width=0.55, color=colors, alpha=0.85, edgecolor="black", lw=0.5)
    has_ci = np.array([np.isfinite(e[0]) for e in errs])
    if has_ci.any():
        yerr = np.array([e for e, ok in zip(errs, has_ci) if ok]).T
        ax_acc.errorbar(x[has_ci], np.asarray(accs)[has_ci], yerr=yerr, fmt="none", ecolor="black",
                        capsize=5, lw=1.2, label="95% bootstrap CI")
    lows = [a - e[0] for a, e in zip(accs, errs) if np.isfinite(e[0])] + accs

    if reference:
        ref_x, ref_y = [], []
        for xi, name in zip(x, names):
            if name in reference:
                val = float(reference[name])
                ref_x.append(xi + 0.36)
                ref_y.append(val / 100.0 if val > 1.0 else val)
        if ref_x:
            ax_acc.plot(ref_x, ref_y, "o", mfc="none", mec="black", ms=9, mew=1.5,
                        label="reported by original study")
            lows += ref_y

    tilt = len(names) > 3
    ax_acc.set_xticks(x, labels=names, rotation=20 if tilt else 0, ha="right" if tilt else "center")
    # Zoom on the range that matters: accuracies of decent models cluster near the top.
    y_lo = max(0.0, min(lows) - 0.05)
    ax_acc.set_ylim(y_lo, 1.0)
    for xi, a in zip(x, accs):
        # Label inside the visible part of the bar (the axis may not start at 0).
        ax_acc.text(xi, (y_lo + a) / 2, f"{a:.3f}", ha="center", va="center", fontsize=9,
                    color="white", weight="bold")
    ax_acc.set(ylabel="Accuracy", title="Test accuracy (95% bootstrap CI)")
    ax_acc.grid(axis="y", alpha=0.3)
    # Below the axes: inside, it would hide bars, error bars or reference markers.
    ax_acc.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22 if tilt else -0.1), ncol=2,
                  fontsize=9, frameon=False)
    fig.tight_layout()
    return _save(fig, out_png)

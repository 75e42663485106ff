"""One overlay PNG per prediction: the X-ray with the original study's prediction box, every class's
probability, the lung-mask outline when a mask was used, and optionally a Grad-CAM panel.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
rendering keeps no global state and is safe to call from a server's worker threads.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..utils import atomic_write_bytes

if TYPE_CHECKING:
    from ..predict.results import PredictionResult

FOOTER = "Research use only \u2014 not for clinical use"
_PANEL_IN = 4.0
_DPI = 100
_MASK_COLOR = "#39ff14"
_BAR_COLOR, _TOP_COLOR = "#9aa5b1", "#d62728"


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else "\u2026" + text[-(n - 1):]


def _image_axes(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="lanczos")
    ax.set_axis_off()


def render_overlay(result: "PredictionResult", classes: Sequence[str], model_label: str = "") -> bytes:
    """Draw one prediction and return the PNG bytes.

    Args:
        result: a `PredictionResult` (its `image`, `mask` and `cam` share one shape).
        classes: class names in model order (bars are drawn in this order).
        model_label: e.g. "cnn 0.1.0", printed in the footer.
    """
    panels = 2 if result.cam is not None else 1
    n = len(classes)
    # Fixed layout in inches (then converted to figure fractions) so every overlay looks the same.
    margin, gap, title_h, footer_h = 0.12, 0.1, 0.35, 0.35
    bars_h = 0.26 * n + 0.1
    width = margin * 2 + _PANEL_IN * panels + gap * (panels - 1)
    height = title_h + _PANEL_IN + 0.2 + bars_h + 0.15 + footer_h
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)

    def rect(x: float, y: float, w: float, h: float) -> list[float]:
        return [x / width, y / height, w / width, h / height]

    fig.text(0.5, 1 - 0.08 / height, _short(result.name, 70), ha="center", va="top", fontsize=10)
    img_y = footer_h + 0.15 + bars_h + 0.2
    ax = fig.add_axes(rect(margin, img_y, _PANEL_IN, _PANEL_IN))
    _image_axes(ax, result.image)
    if result.mask is not None and result.mask.any():
        ax.contour(result.mask.astype(np.float32), levels=[0.5], colors=[_MASK_COLOR], linewidths=1.0)
        ax.text(0.02, 0.02, f"lung mask: {result.mask_source}", transform=ax.transAxes, fontsize=7, color=_MASK_COLOR,
                va="bottom", ha="left", bbox={"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.6, "lw": 0})
    ax.text(0.03, 0.97, f"Prediction: {result.prediction}\nProbability: {100 * result.probability:.1f}%",
            transform=ax.transAxes, fontsize=10, color="white", va="top", ha="left", fontweight="bold",
            bbox={"boxstyle": "round,pad=0.35", "facecolor": "black", "alpha": 0.7, "lw": 0})

    if result.cam is not None:
        cx = fig.add_axes(rect(margin + _PANEL_IN + gap, img_y, _PANEL_IN, _PANEL_IN))
        _image_axes(cx, result.image)
        cx.imshow(result.cam, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.45, interpolation="bilinear")
        cx.text(0.03, 0.97, f"Grad-CAM: {result.prediction}\n(red = most influential)", transform=cx.transAxes,
                fontsize=8, color="white", va="top", ha="left",
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "black", "alpha": 0.6, "lw": 0})

    label_w = 0.2 + 0.07 * max(len(str(c)) for c in classes)  # room for the class names at 8 pt
    bx = fig.add_axes(rect(margin + label_w, footer_h + 0.15, width - 2 * margin - label_w - 0.55, bars_h))
    probs = [float(result.probabilities[c]) for c in classes]
    ys = np.arange(n)[::-1]
    colors = [_TOP_COLOR if c == result.prediction else _BAR_COLOR for c in classes]
    bx.barh(ys, probs, color=colors, height=0.7)
    bx.set_yticks(ys, [str(c) for c in classes], fontsize=8)
    bx.set_xlim(0, 1)
    bx.set_ylim(-0.5, n - 0.5)
    bx.set_xticks([])
    for y, p in zip(ys, probs):
        bx.text(p + 0.01, y, f"{100 * p:.1f}%", va="center", fontsize=8, clip_on=False)
    for side in ("top", "right", "bottom"):
        bx.spines[side].set_visible(False)
    bx.tick_params(axis="y", length=0)

    footer = FOOTER + (f"  \u00b7  model: {model_label}" if model_label else "")
    fig.text(0.5, 0.1 / height, footer, ha="center", va="bottom", fontsize=8, color="#b00020", fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": OVERLAY_SOFTWARE})
    return buf.getvalue()


OVERLAY_SOFTWARE = "lungxray prediction overlay"
"""The PNG `Software` text every overlay carries: `predict --resume` replaces only files that have it."""


def is_overlay(path: str | Path) -> bool:
    """Whether `path` is a PNG that lungxray drew as an overlay (its `Software` text), not someone else's file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.format == "PNG" and img.info.get("Software") == OVERLAY_SOFTWARE
    except (OSError, ValueError, SyntaxError):
        return False


def write_overlay(path: str | Path, result: "PredictionResult", classes: Sequence[str], model_label: str = "") -> Path:
    """Render `result` and write it atomically to `path` (folders created). Returns the path."""
    return atomic_write_bytes(path, render_overlay(result, classes, model_label))

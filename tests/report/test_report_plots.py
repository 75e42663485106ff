"""Tests for lungxray.report.plots: every figure is a real PNG and shows the metrics' numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lungxray.metrics import classification_metrics, softmax
from lungxray.report import layers, plots

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# numpy >= 2 renamed trapz to trapezoid; pyproject still allows numpy 1.x.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _case(seed: int = 0, n: int = 120, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3))
    z[np.arange(n), y] += shift
    return y, softmax(z)


def _assert_png(path: Path, min_side: int = 200) -> None:
    """The file is a complete PNG of a sensible size, and no temp file was left next to it."""
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert min(im.size) >= min_side and max(im.size) < 10000
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_plot_history_from_csv_strings(tmp_path: Path) -> None:
    history = [
        {"epoch": str(e), "train_loss": f"{1.0 / e:.4f}",
         "val_loss": f"{1.0 / e + (e - 3) ** 2 / 20:.4f}", "train_acc": f"{1 - 0.5 / e:.4f}",
         "val_acc": f"{1 - 0.6 / e:.4f}", "lr": f"{1e-3 * 0.5 ** e:.2e}"}
        for e in range(1, 7)
    ]
    out = plots.plot_history(history, tmp_path / "sub" / "history.png")
    assert out == tmp_path / "sub" / "history.png"
    _assert_png(out)
    with pytest.raises(ValueError):
        plots.plot_history([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="val_loss"):
        no_val_loss = [{"epoch": 1, "train_loss": 1, "train_acc": 1, "val_acc": 1}]
        plots.plot_history(no_val_loss, tmp_path / "x.png")


def test_plot_confusion(tmp_path: Path) -> None:
    cm = [[50, 3, 1], [2, 40, 8], [0, 0, 0]]  # an empty row must not break normalisation
    _assert_png(plots.plot_confusion(cm, CLASSES, tmp_path / "cm.png"))
    with pytest.raises(ValueError):
        plots.plot_confusion([[1, 2], [3, 4]], CLASSES, tmp_path / "bad.png")


def test_plot_roc_macro_auc_equals_metric(tmp_path: Path) -> None:
    y, p = _case()
    out, macro = plots.plot_roc(y, p, CLASSES, tmp_path / "roc.png")
    _assert_png(out)
    assert macro == classification_metrics(y, p, CLASSES, n_bootstrap=0)["macro"]["auc"]
    assert 0.5 < macro < 1.0


def test_plot_roc_with_absent_class(tmp_path: Path) -> None:
    y, p = _case(seed=1)
    keep = y != 1
    out, macro = plots.plot_roc(y[keep], p[keep], CLASSES, tmp_path / "roc.png")
    _assert_png(out)
    assert macro == classification_metrics(y[keep], p[keep], CLASSES, n_bootstrap=0)["macro"]["auc"]


def test_plot_reliability(tmp_path: Path) -> None:
    y, p = _case(seed=2)
    _assert_png(plots.plot_reliability(y, p, tmp_path / "rel.png", n_bins=10))


def test_macro_roc_curve_is_monotone_and_bounded() -> None:
    y, p = _case(seed=3)
    fpr, tpr, macro = plots.macro_roc_curve(y, p)
    assert fpr[0] == 0.0 and fpr[-1] == 1.0
    assert tpr[-1] == pytest.approx(1.0)
    assert np.all(np.diff(tpr) >= -1e-12) and np.all((tpr >= 0) & (tpr <= 1))
    # The area under the averaged curve is close to (not identical with) the mean of the AUCs.
    assert _trapezoid(tpr, fpr) == pytest.approx(macro, abs=0.02)
    # A perfect scorer's averaged curve jumps straight to TPR 1.
    yy = np.repeat(np.arange(3), 10)
    pp = np.full((30, 3), 0.1)
    pp[np.arange(30), yy] = 0.8
    _, tpr, macro = plots.macro_roc_curve(yy, pp)
    assert macro == 1.0 and np.all(tpr[1:] == 1.0)


def test_interp_roc_takes_top_of_vertical_segments() -> None:
    fpr = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
    tpr = np.array([0.0, 0.4, 0.6, 0.8, 1.0])
    grid = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    assert plots._interp_roc(fpr, tpr, grid) == pytest.approx([0.4, 0.5, 0.8, 0.9, 1.0])


def test_plot_comparison_with_reference(tmp_path: Path) -> None:
    results = []
    for i, (name, shift) in enumerate([("ResNet-18", 2.0), ("DenseNet-121", 1.0)]):
        y, p = _case(seed=10 + i, shift=shift)
        m = classification_metrics(y, p, CLASSES, n_bootstrap=100)
        results.append({"name": name, "y_true": y, "probs": p, "classes": CLASSES,
                        "accuracy": m["accuracy"], "accuracy_ci": m["accuracy_ci"]})
    # One model without stored accuracy: it is computed and drawn without an error bar.
    y, p = _case(seed=20)
    results.append({"name": "Plain CNN", "y_true": y, "probs": p, "classes": CLASSES})
    reference = {"ResNet-18": 97.9, "Plain CNN": 0.9}  # a percentage and a fraction
    out = plots.plot_comparison(results, tmp_path / "cmp.png", reference=reference)
    _assert_png(out)
    with pytest.raises(ValueError):
        plots.plot_comparison([], tmp_path / "none.png")


def test_layer_table_shapes_and_params(tmp_path: Path) -> None:
    import torch
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )
    model.train()
    rows = layers.layer_table(model, (2, 1, 8, 8))
    assert model.training  # mode restored after the eval-mode probe
    types = ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert [r["type"] for r in rows] == types
    assert [r["output_shape"] for r in rows] == [
        [2, 4, 8, 8], [2, 4, 8, 8], [2, 4, 8, 8], [2, 4, 4, 4], [2, 64], [2, 3],
    ]
    assert [r["params"] for r in rows] == [4 * 9 + 4, 8, 0, 0, 0, 64 * 3 + 3]
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in model.parameters())
    assert rows[0]["name"] == "0" and rows[-1]["name"] == "5"
    _assert_png(layers.plot_layer_table(rows, tmp_path / "layers.png", "Tiny CNN"))


def test_layer_table_counts_container_params_and_shared_modules_once() -> None:
    import torch
    nn = torch.nn

    class WithToken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.zeros(5))  # owned by a container, not a leaf
            self.fc = nn.Linear(5, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x + self.token))  # the same layer runs twice

    model = WithToken()
    rows = layers.layer_table(model, (3, 5))
    assert [r["type"] for r in rows] == ["Linear", "Linear", "WithToken"]
    assert [r["output_shape"] for r in rows] == [[3, 5], [3, 5], [3, 5]]
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in model.parameters()) == 35

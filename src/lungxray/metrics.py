"""Classification metrics with bootstrap confidence intervals, calibration and temperature scaling.

Everything here works on plain numpy arrays: `y_true` is an int array (N,) of class indices and
`probs` a float array (N, C) of class probabilities whose rows sum to 1. Results are returned as
JSON-serialisable dicts (plain Python floats/ints/lists, `None` where a value is undefined), so
they can be written to `metrics.json` without a custom encoder.

Conventions (documented once here so tables and plots agree):

* The predicted class is the arg-max of `probs`; ties go to the lowest class index.
* Precision/recall/F1 with a zero denominator are 0.0 (scikit-learn's ``zero_division=0``), and
  macro averages include such classes, so they match ``precision_recall_fscore_support(...,
  labels=range(C), average="macro", zero_division=0)``.
* A one-vs-rest AUC is undefined (`None`) when the class has no positives or no negatives; the
  macro AUC is the unweighted mean of the defined per-class AUCs.
* Calibration uses the top-class confidence with equal-width bins (lo, hi], the first bin also
  holding 0; `reliability_bins` is the single implementation behind both `ece` and the plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .bootstrap import _bootstrap, _percentile_ci

# scipy and scikit-learn are imported where they are used: prediction imports `softmax` from here, and
# importing sklearn.metrics takes about 1.2 s (python -X importtime) that prediction does not need.

__all__ = [
    "classification_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "one_vs_rest_auc",
    "reliability_bins",
    "roc_curve",
    "softmax",
]

_ROW_SUM_ATOL = 1e-3
"""Tolerance on row sums: float32 softmax outputs drift by ~1e-7, hand-rounded CSVs by ~1e-4."""

_NLL_EPS = 1e-12
"""Probabilities are clipped to [eps, 1] so one confident mistake gives a large but finite NLL."""



# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _as_labels(y_true: ArrayLike) -> NDArray[np.int64]:
    """Convert labels to a 1-D int64 array, refusing non-integral values."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D (N,), got shape {y.shape}")
    if y.dtype == bool:
        # A bool array is almost always a mask passed by mistake, not class indices.
        raise ValueError("y_true must hold integer class indices, got a boolean array")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        try:
            yf = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"y_true must hold integer class indices, got dtype {y.dtype}"
            ) from None
        if not np.all(np.isfinite(yf)) or not np.all(yf == np.round(yf)):
            raise ValueError("y_true must hold integer class indices, got non-integral values")
        y = yf
    return y.astype(np.int64)


def _check_arrays(
    y_true: ArrayLike, probs: ArrayLike, n_classes: int | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Validate labels and probabilities and return them as int64 / float64 arrays.

    Args:
        y_true: Class indices, shape (N,).
        probs: Class probabilities, shape (N, C), rows summing to 1.
        n_classes: Expected C, or None to take it from `probs`.

    Returns:
        (y, p) as numpy arrays.
    """
    y = _as_labels(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(
            f"y_true and probs disagree on the number of samples: {y.shape[0]} labels vs "
            f"{p.shape[0]} probability rows"
        )
    if y.shape[0] == 0:
        raise ValueError("no samples: y_true and probs are empty")
    if n_classes is not None and p.shape[1] != n_classes:
        raise ValueError(f"probs has {p.shape[1]} columns but there are {n_classes} classes")
    if p.shape[1] < 2:
        raise ValueError(f"need at least 2 classes, probs has {p.shape[1]} column(s)")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    if np.any(p < 0):
        raise ValueError(f"probs must be non-negative, smallest value is {p.min():.6g}")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_ATOL)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"probs rows must sum to 1 (are these logits? apply softmax first): {bad.size} row(s) "
            f"off by more than {_ROW_SUM_ATOL}, e.g. row {i} sums to {sums[i]:.6g}"
        )
    c = p.shape[1]
    out = (y < 0) | (y >= c)
    if np.any(out):
        raise ValueError(
            f"labels out of range [0, {c - 1}]: found {sorted({int(v) for v in y[out]})[:5]}"
        )
    return y, p


def _is_int(value: object) -> bool:
    """True for Python/numpy integers, False for bools (True is not a bin count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_classes(classes: Sequence[str], n_classes: int) -> list[str]:
    """Validate class names against the number of probability columns."""
    names = [str(c) for c in classes]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names given but probs has {n_classes} columns")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names


# --------------------------------------------------------------------------------------------
# Softmax and temperature scaling
# --------------------------------------------------------------------------------------------


def _log_softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Log-softmax over the last axis (scipy's, stable for large logits)."""
    from scipy.special import log_softmax

    return log_softmax(z, axis=-1)


def softmax(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Numerically stable softmax over the last axis.

    Args:
        logits: Array (..., C) of unnormalised scores.
        temperature: T > 0; the logits are divided by T (T > 1 softens, T < 1 sharpens).

    Returns:
        float64 array of the same shape whose last axis sums to 1.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite positive number, got {temperature}")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 1:
        raise ValueError("logits must have at least one dimension")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contains NaN or infinite values")
    return np.exp(_log_softmax(z / temperature))


def fit_temperature(
    logits: ArrayLike, y_true: ArrayLike, *, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """Fit the temperature T minimising the NLL of softmax(logits / T) (temperature scaling).

    The search runs over log T: the NLL is convex in 1/T, hence unimodal in log T, so scipy's bounded
    1-D search finds the global optimum.

    Args:
        logits: Validation-set logits, shape (N, C).
        y_true: Validation labels, shape (N,).
        bounds: Allowed range (T_min, T_max); an optimum on a bound means the logits are degenerate.

    Returns:
        The fitted temperature T > 0.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = _as_labels(y_true)
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {z.shape}")
    if z.shape[0] != y.shape[0]:
        raise ValueError(f"{y.shape[0]} labels but {z.shape[0]} rows of logits")
    if z.shape[0] == 0:
        raise ValueError("no samples to fit a temperature on")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contains NaN or infinite values")
    if np.any((y < 0) | (y >= z.shape[1])):
        raise ValueError(f"labels out of range [0, {z.shape[1] - 1}]")
    t_lo, t_hi = bounds
    if not (0 < t_lo < t_hi and math.isfinite(t_hi)):
        raise ValueError(f"bounds must satisfy 0 < T_min < T_max < inf, got {bounds}")

    rows = np.arange(z.shape[0])

    def nll(log_t: float) -> float:
        return float(-_log_softmax(z / math.exp(log_t))[rows, y].mean())

    from scipy.optimize import minimize_scalar

    res = minimize_scalar(nll, bounds=(math.log(t_lo), math.log(t_hi)), method="bounded", options={"xatol": 1e-7})
    return float(math.exp(float(res.x)))


# --------------------------------------------------------------------------------------------
# ROC / AUC
# --------------------------------------------------------------------------------------------


def one_vs_rest_auc(y_true: ArrayLike, probs: ArrayLike) -> list[float | None]:
    """One-vs-rest ROC-AUC of every class.

    Args:
        y_true: Class indices (N,).
        probs: Class probabilities (N, C).

    Returns:
        C values; `None` for a class with no positives or no negatives.
    """
    from sklearn.metrics import roc_auc_score

    y, p = _check_arrays(y_true, probs)
    out: list[float | None] = []
    for k in range(p.shape[1]):
        positive = y == k
        defined = positive.any() and not positive.all()
        out.append(float(roc_auc_score(positive, p[:, k])) if defined else None)
    return out


def _mean_defined(values: Sequence[float | None]) -> float | None:
    """Unweighted mean of the non-None values, None if there are none."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def roc_curve(
    positive: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Binary ROC curve, one point per distinct score threshold, starting at (0, 0).

    Its trapezoidal area equals `one_vs_rest_auc` (tied scores give a diagonal segment, the
    same one-half credit the Mann-Whitney statistic gives).

    Args:
        positive: Bool/0-1 array (N,) marking positives.
        scores: Scores (N,), higher meaning more likely positive.

    Returns:
        (fpr, tpr) arrays, non-decreasing, ending at (1, 1). NaN-filled when a class is absent.
    """
    pos = np.asarray(positive).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if pos.shape != s.shape or pos.ndim != 1:
        raise ValueError(
            f"positive and scores must be 1-D of equal length, got {pos.shape}, {s.shape}"
        )
    if pos.all() or not pos.any():  # a rate with a zero denominator: no curve
        nan = np.full(np.unique(s).size + 1, np.nan)
        return nan, nan.copy()
    from sklearn.metrics import roc_curve as sk_roc_curve

    fpr, tpr, _ = sk_roc_curve(pos, s, drop_intermediate=False)
    return fpr.astype(np.float64), tpr.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def reliability_bins(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> dict[str, Any]:
    """Bin the top-class confidence into equal-width bins and compare it with accuracy.

    Args:
        y_true: Class indices (N,).
        probs: Class probabilities (N, C).
        n_bins: Number of equal-width bins on [0, 1].

    Returns:
        {"edges": n_bins+1 floats, "confidence": mean confidence per bin, "accuracy": accuracy
        per bin (both None for an empty bin), "count": samples per bin, "ece": the expected
        calibration error computed from exactly these bins}.
    """
    if not _is_int(n_bins) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    y, p = _check_arrays(y_true, probs)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    # side="left" on the inner edges gives (lo, hi] bins; a confidence of exactly 0 lands in bin 0.
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    n = float(y.shape[0])
    ece = 0.0
    conf_out: list[float | None] = []
    acc_out: list[float | None] = []
    for b in range(n_bins):
        if count[b] == 0:
            conf_out.append(None)
            acc_out.append(None)
            continue
        cb, ab = conf_sum[b] / count[b], acc_sum[b] / count[b]
        conf_out.append(float(cb))
        acc_out.append(float(ab))
        ece += count[b] / n * abs(ab - cb)
    return {
        "edges": [float(e) for e in edges],
        "confidence": conf_out,
        "accuracy": acc_out,
        "count": [int(c) for c in count],
        "ece": float(ece),
    }


def expected_calibration_error(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence (equal-width bins).

    Args:
        y_true: Class indices (N,).
        probs: Class probabilities (N, C).
        n_bins: Number of equal-width bins on [0, 1].

    Returns:
        sum over bins of (bin size / N) * |accuracy - mean confidence|, in [0, 1].
    """
    return float(reliability_bins(y_true, probs, n_bins)["ece"])


# --------------------------------------------------------------------------------------------
# Full metrics
# --------------------------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float:
    """num / den, 0.0 when den is 0 (scikit-learn's zero_division=0)."""
    return float(num / den) if den else 0.0


def classification_metrics(
    y_true: ArrayLike,
    probs: ArrayLike,
    classes: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Accuracy, per-class/macro metrics, AUCs with bootstrap CIs, confusion matrix, calibration.

    Args:
        y_true: Class indices (N,) into `classes`.
        probs: Class probabilities (N, C), rows summing to 1, columns in `classes` order.
        classes: The C class names in canonical order.
        n_bootstrap: Number of bootstrap resamples for the 95 % CIs; 0 disables them (CIs None).
        seed: Seed of the explicit `np.random.default_rng` used for resampling.
        n_bins: Number of equal-width bins for the ECE.

    Returns:
        JSON-serialisable dict with keys n, classes, accuracy, accuracy_ci, per_class, macro,
        confusion_matrix, confusion_matrix_normalized, ece, nll, brier (see module docstring for
        conventions). CIs are [lo, hi] or None when no resample gave a defined value.
    """
    if not _is_int(n_bootstrap) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    y, p = _check_arrays(y_true, probs)
    names = _check_classes(classes, p.shape[1])
    n, c = p.shape

    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, labels=list(range(c)))
    row = cm.sum(axis=1, keepdims=True)
    cm_norm = np.divide(cm, row, out=np.zeros((c, c)), where=row > 0)
    correct = (pred == y).astype(np.float64)
    accuracy = float(correct.mean())

    aucs = one_vs_rest_auc(y, p)
    defined = [a is not None for a in aucs]

    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        acc_bs, auc_bs, macro_bs = _bootstrap(y, p, correct, defined, int(n_bootstrap), rng)
        accuracy_ci = _percentile_ci(acc_bs)
        auc_cis = [_percentile_ci(auc_bs[k]) for k in range(c)]
        macro_auc_ci = _percentile_ci(macro_bs)
    else:
        accuracy_ci, auc_cis, macro_auc_ci = None, [None] * c, None

    labels = list(range(c))
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class: dict[str, dict[str, Any]] = {}
    cols: dict[str, list[float]] = {"precision": [], "recall": [], "specificity": [], "f1": []}
    for k, name in enumerate(names):
        fp = float(cm[:, k].sum() - cm[k, k])
        tn = float(n - cm[k].sum() - fp)
        specificity = _ratio(tn, tn + fp)  # scikit-learn has no specificity: recall of "not k"
        values = (float(precision[k]), float(recall[k]), specificity, float(f1[k]))
        for key, val in zip(cols, values):
            cols[key].append(val)
        per_class[name] = {
            "precision": values[0],
            "recall": values[1],
            "specificity": specificity,
            "f1": values[3],
            "auc": aucs[k],
            "auc_ci": auc_cis[k],
            "support": int(cm[k].sum()),
        }

    macro: dict[str, Any] = {key: float(np.mean(vals)) for key, vals in cols.items()}
    macro["auc"] = _mean_defined(aucs)
    macro["auc_ci"] = macro_auc_ci

    onehot = np.eye(c)[y]
    return {
        "n": int(n),
        "classes": names,
        "accuracy": accuracy,
        "accuracy_ci": accuracy_ci,
        "per_class": per_class,
        "macro": macro,
        "confusion_matrix": cm.astype(int).tolist(),
        "confusion_matrix_normalized": cm_norm.tolist(),
        "ece": float(reliability_bins(y, p, n_bins)["ece"]),
        # Not sklearn's log_loss: it renormalises rows (and warns) where hand-rounded CSV probabilities sum to
        # 0.999; the NLL here scores the probability of the true class exactly as given.
        "nll": float(-np.log(np.clip(p[np.arange(n), y], _NLL_EPS, 1.0)).mean()),
        # Multi-class Brier score: mean squared distance to the one-hot label, in [0, 2].
        "brier": float(((p - onehot) ** 2).sum(axis=1).mean()),
    }

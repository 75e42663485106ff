"""Tests for lungxray.metrics: accuracy/CI, per-class metrics, AUC, calibration, temperature."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from lungxray import metrics as M
from lungxray.bootstrap import _weighted_auc

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]

# numpy >= 2 renamed trapz to trapezoid; pyproject still allows numpy 1.x.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _onehotish(pred: np.ndarray, c: int = 3, top: float = 0.6) -> np.ndarray:
    """Probabilities with `top` on the predicted class and the rest spread evenly."""
    p = np.full((pred.size, c), (1.0 - top) / (c - 1))
    p[np.arange(pred.size), pred] = top
    return p


def _random_case(seed: int = 0, n: int = 300, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Noisy but informative predictions, rounded so that tied scores occur."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c))
    z[np.arange(n), y] += 1.0
    p = np.round(M.softmax(z), 2)
    return y, p / p.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- basic metrics


def test_accuracy_is_trace_over_total_of_confusion_matrix() -> None:
    y, p = _random_case()
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=50)
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (3, 3)
    assert cm.sum() == m["n"] == len(y)
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert m["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    # Rows are true classes: row sums are the class supports.
    for k, name in enumerate(CLASSES):
        assert cm[k].sum() == m["per_class"][name]["support"] == np.sum(y == k)


def test_perfect_scorer() -> None:
    y = np.repeat(np.arange(3), 20)
    p = _onehotish(y, top=0.8)
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=200)
    assert m["accuracy"] == 1.0
    assert m["accuracy_ci"] == [1.0, 1.0]
    for name in CLASSES:
        assert m["per_class"][name]["auc"] == 1.0
        assert m["per_class"][name]["auc_ci"] == [1.0, 1.0]
    assert m["macro"]["auc"] == 1.0
    assert np.allclose(m["confusion_matrix_normalized"], np.eye(3))


def test_reversed_scorer_has_auc_zero() -> None:
    y = np.repeat(np.arange(3), 20)
    # The true class always gets the lowest score, so every negative outranks every positive.
    p = np.full((y.size, 3), 0.45)
    p[np.arange(y.size), y] = 0.10
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=0)
    for name in CLASSES:
        assert m["per_class"][name]["auc"] == 0.0
    assert m["macro"]["auc"] == 0.0
    assert m["accuracy_ci"] is None  # n_bootstrap=0 disables CIs


def test_hand_computed_three_class_example() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 2, 1, 1, 1, 2, 2, 0])
    m = M.classification_metrics(y, _onehotish(pred), CLASSES, n_bootstrap=0)
    assert m["confusion_matrix"] == [[2, 1, 1], [0, 3, 0], [1, 0, 2]]
    pc = m["per_class"]
    # COVID: TP=2 FN=2 FP=1 TN=5; Normal: TP=3 FN=0 FP=1 TN=6; Viral: TP=2 FN=1 FP=1 TN=6.
    # FN != FP for two classes, so swapping them in any formula changes the result.
    expected = {
        "COVID": dict(recall=2 / 4, specificity=5 / 6, precision=2 / 3, f1=4 / 7, support=4),
        "Normal": dict(recall=3 / 3, specificity=6 / 7, precision=3 / 4, f1=6 / 7, support=3),
        "Viral Pneumonia": dict(
            recall=2 / 3, specificity=6 / 7, precision=2 / 3, f1=2 / 3, support=3
        ),
    }
    for name, exp in expected.items():
        for key, val in exp.items():
            assert pc[name][key] == pytest.approx(val), (name, key)
    for key in ("recall", "specificity", "precision", "f1"):
        assert m["macro"][key] == pytest.approx(np.mean([e[key] for e in expected.values()]))
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["confusion_matrix_normalized"][0] == pytest.approx([0.5, 0.25, 0.25])


def test_matches_sklearn_on_random_data_with_ties() -> None:
    y, p = _random_case(seed=3)
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=0)
    expected = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert m["macro"]["auc"] == pytest.approx(expected)
    for k, name in enumerate(CLASSES):
        assert m["per_class"][name]["auc"] == pytest.approx(roc_auc_score(y == k, p[:, k]))
    prec, rec, f1, _ = precision_recall_fscore_support(
        y, p.argmax(1), labels=range(3), average="macro", zero_division=0
    )
    got = (m["macro"]["precision"], m["macro"]["recall"], m["macro"]["f1"])
    assert got == pytest.approx((prec, rec, f1))


def test_roc_curve_area_equals_auc() -> None:
    y, p = _random_case(seed=4)
    aucs = M.one_vs_rest_auc(y, p)
    for k in range(3):
        fpr, tpr = M.roc_curve(y == k, p[:, k])
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
        assert _trapezoid(tpr, fpr) == pytest.approx(aucs[k])


def test_missing_class_gives_null_auc_and_zero_row() -> None:
    y, p = _random_case(seed=5)
    keep = y != 2
    y, p = y[keep], p[keep]
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=100)
    viral = m["per_class"]["Viral Pneumonia"]
    assert viral["auc"] is None and viral["auc_ci"] is None and viral["support"] == 0
    defined = [m["per_class"][n]["auc"] for n in ("COVID", "Normal")]
    assert m["macro"]["auc"] == pytest.approx(np.mean(defined))
    assert m["macro"]["auc_ci"] is not None
    assert len(m["confusion_matrix"]) == 3 and all(len(r) == 3 for r in m["confusion_matrix"])
    assert m["confusion_matrix_normalized"][2] == [0.0, 0.0, 0.0]
    json.dumps(m, allow_nan=False)


def test_bootstrap_is_seeded_explicitly_and_brackets_estimate() -> None:
    y, p = _random_case(seed=6)
    state = np.random.get_state()
    a = M.classification_metrics(y, p, CLASSES, n_bootstrap=300, seed=1)
    # The global RNG must be untouched: the module never seeds or draws from it.
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]
    b = M.classification_metrics(y, p, CLASSES, n_bootstrap=300, seed=1)
    c = M.classification_metrics(y, p, CLASSES, n_bootstrap=300, seed=2)
    assert a == b
    assert a["accuracy_ci"] != c["accuracy_ci"]
    lo, hi = a["accuracy_ci"]
    assert lo < a["accuracy"] < hi and hi - lo < 0.2
    lo, hi = a["macro"]["auc_ci"]
    assert lo < a["macro"]["auc"] < hi


def test_macro_auc_bootstrap_skips_resamples_missing_a_class() -> None:
    # COVID and Normal are ranked perfectly (AUC 1), the 2 rare Viral cases perfectly wrong (AUC 0),
    # so every resample that keeps all three classes has macro AUC exactly 1/3. About 13 % of
    # resamples draw no Viral case; averaging only the classes present there would give 1.0.
    y = np.array([0] * 30 + [1] * 30 + [2] * 2)
    p = np.array([[0.8, 0.1, 0.1]] * 30 + [[0.1, 0.8, 0.1]] * 30 + [[0.5, 0.45, 0.05]] * 2)
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=400, seed=0)
    assert m["macro"]["auc"] == pytest.approx(2 / 3)
    assert m["macro"]["auc_ci"] == pytest.approx([2 / 3, 2 / 3])
    assert m["per_class"]["Viral Pneumonia"]["auc_ci"] == [0.0, 0.0]
    assert m["per_class"]["COVID"]["auc_ci"] == [1.0, 1.0]


def test_output_survives_json() -> None:
    y, p = _random_case(seed=7)
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=50)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert set(m) == {
        "n", "classes", "accuracy", "accuracy_ci", "per_class", "macro", "confusion_matrix",
        "confusion_matrix_normalized", "ece", "nll", "brier",
    }
    assert set(m["per_class"]["COVID"]) == {
        "precision", "recall", "specificity", "f1", "auc", "auc_ci", "support",
    }
    assert set(m["macro"]) == {"precision", "recall", "specificity", "f1", "auc", "auc_ci"}


def test_nll_and_brier() -> None:
    y = np.array([0, 1])
    p = np.array([[0.5, 0.5], [0.0, 1.0]])
    m = M.classification_metrics(y, p, ["a", "b"], n_bootstrap=0)
    assert m["nll"] == pytest.approx(-np.log(0.5) / 2)
    assert m["brier"] == pytest.approx((0.25 + 0.25 + 0.0) / 2)
    # A confident mistake is clipped to a finite NLL.
    m = M.classification_metrics(np.array([0]), np.array([[0.0, 1.0]]), ["a", "b"], n_bootstrap=0)
    assert np.isfinite(m["nll"]) and m["nll"] > 20


@pytest.mark.parametrize(
    ("y", "p", "classes", "match"),
    [
        ([0, 1], [[0.5, 0.5]], ["a", "b"], "number of samples"),
        ([0, 1], [[0.9, 0.9], [0.5, 0.5]], ["a", "b"], "sum to 1"),
        ([0, 2], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], "out of range"),
        ([0, -1], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], "out of range"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], ["a", "b", "c"], "class names"),
        ([0, 1], [0.5, 0.5], ["a", "b"], "2-D"),
        ([[0, 1]], [[0.5, 0.5]], ["a", "b"], "1-D"),
        ([0.5, 1], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], "integer"),
        ([0, 1], [[1.5, -0.5], [0.5, 0.5]], ["a", "b"], "non-negative"),
        ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], ["a", "b"], "NaN"),
        ([], np.zeros((0, 2)), ["a", "b"], "empty"),
    ],
)
def test_bad_inputs_raise_value_error(y: list, p: list, classes: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        M.classification_metrics(np.asarray(y), np.asarray(p), classes, n_bootstrap=0)


# ----------------------------------------------------------------------------- calibration


def test_ece_of_calibrated_construction_is_zero() -> None:
    # 100 samples at confidence 0.8 of which 80 are right; 50 at 0.6 of which 30 are right.
    p = np.vstack([np.tile([0.8, 0.1, 0.1], (100, 1)), np.tile([0.1, 0.6, 0.3], (50, 1))])
    y = np.array([0] * 80 + [1] * 10 + [2] * 10 + [1] * 30 + [0] * 20)
    assert M.expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    m = M.classification_metrics(y, p, CLASSES, n_bootstrap=0)
    assert m["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_of_overconfident_construction_is_large() -> None:
    p = np.tile([0.99, 0.005, 0.005], (100, 1))
    y = np.array([0] * 50 + [1] * 50)
    assert M.expected_calibration_error(y, p) == pytest.approx(0.49)


def test_reliability_bins_agree_with_ece_and_a_direct_computation() -> None:
    y, p = _random_case(seed=8)
    bins = M.reliability_bins(y, p, n_bins=10)
    assert len(bins["edges"]) == 11 and len(bins["count"]) == 10
    assert sum(bins["count"]) == len(y)
    assert bins["ece"] == M.expected_calibration_error(y, p, n_bins=10)
    # Independent computation with explicit (lo, hi] masks.
    conf, correct = p.max(1), p.argmax(1) == y
    edges = np.linspace(0, 1, 11)
    ece = 0.0
    for b in range(10):
        mask = (conf > edges[b]) & (conf <= edges[b + 1])
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
            assert bins["accuracy"][b] == pytest.approx(correct[mask].mean())
        else:
            assert bins["accuracy"][b] is None and bins["confidence"][b] is None
    assert bins["ece"] == pytest.approx(ece)


# ----------------------------------------------------------------------------- temperature


def test_softmax_is_stable_and_tempered() -> None:
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    s = M.softmax(z)
    assert np.all(np.isfinite(s)) and np.allclose(s.sum(1), 1.0)
    assert s[0, 0] == pytest.approx(1.0)
    e = np.exp(np.array([1.0, 2.0, 3.0]) / 2)
    assert M.softmax(z, temperature=2.0)[1] == pytest.approx(e / e.sum())
    with pytest.raises(ValueError):
        M.softmax(z, temperature=0.0)


def _overconfident_logits(seed: int = 0, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), so z is calibrated; return (2 z, labels)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 1.5
    cum = np.cumsum(M.softmax(z), axis=1)
    y = (rng.random(n)[:, None] > cum).sum(axis=1)
    return 2.0 * z, y


def test_fit_temperature_recovers_two() -> None:
    logits, y = _overconfident_logits()
    t = M.fit_temperature(logits, y)
    assert t == pytest.approx(2.0, abs=0.2)
    # Scaling must actually improve calibration on the data it was fitted on.
    before = M.classification_metrics(y, M.softmax(logits), CLASSES, n_bootstrap=0)
    after = M.classification_metrics(y, M.softmax(logits, t), CLASSES, n_bootstrap=0)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"]


def test_fit_temperature_bad_inputs() -> None:
    with pytest.raises(ValueError):
        M.fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError):
        M.fit_temperature(np.zeros((2, 2)), np.array([0, 5]))


def test_bootstrap_auc_agrees_with_scikit_learn_on_each_resample() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=200)
    p = rng.dirichlet(np.ones(3), size=200).round(2)  # rounding makes ties
    counts = np.stack([np.bincount(rng.integers(0, 200, 200), minlength=200) for _ in range(5)]).astype(float)
    for k in range(3):
        fast = _weighted_auc(p[:, k], y == k, counts)
        for b in range(5):
            idx = np.repeat(np.arange(200), counts[b].astype(int))
            assert fast[b] == pytest.approx(roc_auc_score(y[idx] == k, p[idx, k]), abs=1e-12)


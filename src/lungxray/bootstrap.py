"""Bootstrap confidence intervals for accuracy and one-vs-rest AUCs, all resamples at once.

Kept hand-written by measurement: a vectorised AUC over resample multiplicities is about 57x faster than
calling scikit-learn once per resample (benchmarks/metrics.py, docs/RESULTS.md issue 14).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_BOOTSTRAP_CELLS = 2_000_000
"""Max resample-count cells held at once (chunk rows x N); bounds memory to a few tens of MB."""


def _weighted_auc(
    scores: NDArray[np.float64], positive: NDArray[np.bool_], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Mann-Whitney AUC for many sample weightings at once (ties count one half), for the bootstrap only.

    Bootstrap resamples are expressed as per-sample multiplicities, so the scores are sorted once
    and every resample is a weighted sum over the same tie groups: no per-resample sort. Kept rather than
    calling scikit-learn per resample because it is much faster at 1,000 resamples (benchmarks/metrics.py);
    point estimates use scikit-learn, and a test checks the two agree.

    Args:
        scores: Scores (N,) for the positive class.
        positive: Bool mask (N,) of positives.
        weights: Multiplicities (B, N); a row of ones gives the plain AUC.

    Returns:
        Array (B,) of AUCs, NaN where a weighting has no positives or no negatives.
    """
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = positive[order].astype(np.float64)
    w = weights[:, order]
    p_grp = np.add.reduceat(w * pos, starts, axis=1)
    n_grp = np.add.reduceat(w * (1.0 - pos), starts, axis=1)
    n_below = np.cumsum(n_grp, axis=1) - n_grp
    wins = (p_grp * (n_below + 0.5 * n_grp)).sum(axis=1)
    denom = p_grp.sum(axis=1) * n_grp.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, wins / np.where(denom > 0, denom, 1.0), np.nan)


def _percentile_ci(values: NDArray[np.float64]) -> list[float] | None:
    """95 % percentile interval of the finite values, None if there are none."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def _bootstrap(
    y: NDArray[np.int64],
    p: NDArray[np.float64],
    correct: NDArray[np.float64],
    defined: list[bool],
    n_bootstrap: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Draw bootstrap resamples and return accuracy, per-class AUC and macro AUC per resample.

    A resample is a row of multiplicities (how often each sample was drawn), so all statistics are
    weighted sums over the original arrays. The macro AUC of a resample is only kept when every
    class whose AUC is defined on the full data is defined in the resample too, so the resampled
    statistic averages the same classes as the point estimate.

    Returns:
        acc (B,), auc (C, B) with NaN for skipped resamples, macro (B,) with NaN likewise.
    """
    n, c = p.shape
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    acc = np.empty(n_bootstrap)
    auc = np.full((c, n_bootstrap), np.nan)
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        draws = rng.integers(0, n, size=(b, n))
        counts = np.bincount(
            (draws + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n
        ).reshape(b, n).astype(np.float64)
        acc[start : start + b] = counts @ correct / n
        for k in range(c):
            if defined[k]:
                auc[k, start : start + b] = _weighted_auc(p[:, k], y == k, counts)
    if any(defined):
        sel = auc[np.asarray(defined)]
        # NaN in any defined class propagates, which is exactly the "skip this resample" rule.
        macro = sel.mean(axis=0)
    else:
        macro = np.full(n_bootstrap, np.nan)
    return acc, auc, macro



"""Why the bootstrap keeps its own AUC: 1,000 resamples of a test-sized split, vectorised Mann-Whitney against
scikit-learn's roc_auc_score once per resample and class. Medians of --repeats runs, one process.

    python benchmarks/metrics.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from lungxray.bootstrap import _weighted_auc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1009, help="images (default: the v2 test split's size)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=args.n)
    p = rng.dirichlet(np.ones(3), size=args.n)
    draws = rng.integers(0, args.n, size=(args.resamples, args.n))
    counts = np.stack([np.bincount(d, minlength=args.n) for d in draws]).astype(np.float64)

    def ours() -> np.ndarray:
        return np.stack([_weighted_auc(p[:, k], y == k, counts) for k in range(3)])

    def sklearn() -> np.ndarray:
        return np.array([[roc_auc_score(y[d] == k, p[d, k]) for d in draws] for k in range(3)])

    timings = {}
    for name, fn in (("vectorised (lungxray)", ours), ("roc_auc_score per resample", sklearn)):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        timings[name] = (statistics.median(times), out)
    (a, ours_out), (b, sk_out) = timings.values()
    print(f"{args.resamples} resamples x 3 classes, n = {args.n}")
    for name, (t, _) in timings.items():
        print(f"  {name:<28} {t:8.3f} s (median of {args.repeats})")
    print(f"  speed-up {b / a:.1f}x; largest difference {np.nanmax(np.abs(ours_out - sk_out)):.2e}")


if __name__ == "__main__":
    main()

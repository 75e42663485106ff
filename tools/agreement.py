"""Do independently trained runs make the same mistakes? Read several runs' saved predictions on one split
(`lungxray evaluate RUN --split val` writes RUN/eval-val/predictions.csv) and report each run's accuracy, the
accuracy and NLL of their averaged probabilities (an ensemble), and how many runs got each image wrong.

    python tools/agreement.py runs/lungs runs/lungs-seed1 ... --split val

If the runs' errors were independent, averaging would fix most of them and distilling an ensemble would pay;
if most errors are shared by every run, more seeds or an ensemble cannot reach much further, and the shared
errors (listed with --list K: images wrong in at least K runs) are the ones to look at. Validation only: this
chooses nothing, so the test split is not read.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def read_predictions(run: str | Path, split: str) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """(paths, labels, class names, probabilities (N, C)) from RUN/eval-SPLIT/predictions.csv, sorted by path."""
    path = Path(run) / f"eval-{split}" / "predictions.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `lungxray evaluate {run} --split {split}` first")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fixed = {"path", "label", "prediction", "probability"}
        classes = [c for c in (reader.fieldnames or []) if c not in fixed]
        rows = sorted(reader, key=lambda r: r["path"])
    probs = np.array([[float(r[c]) for c in classes] for r in rows], dtype=np.float64)
    return [r["path"] for r in rows], [r["label"] for r in rows], classes, probs


def agreement(runs: list[str | Path], split: str = "val") -> dict:
    """Per-run and ensemble accuracy, ensemble NLL, and the number of runs that got each image wrong."""
    first = read_predictions(runs[0], split)
    paths, labels, classes = first[0], first[1], first[2]
    probs = [first[3]]
    for run in runs[1:]:
        p, lab, cls, pr = read_predictions(run, split)
        if p != paths or lab != labels or cls != classes:
            raise ValueError(f"{run} was evaluated on other images or classes than {runs[0]}")
        probs.append(pr)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"{runs[0]}: labels {unknown} have no probability column")
    y = np.array([classes.index(lab) for lab in labels])
    stack = np.stack(probs)  # (runs, N, C)
    wrong = stack.argmax(2) != y[None]
    mean = stack.mean(0)
    return {
        "paths": paths, "labels": labels, "classes": classes, "ensemble": mean,
        "run_accuracy": 1.0 - wrong.mean(1),
        "ensemble_accuracy": float((mean.argmax(1) == y).mean()),
        "ensemble_nll": float(-np.log(np.clip(mean[np.arange(len(y)), y], 1e-12, None)).mean()),
        "wrong_count": wrong.sum(0),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders, each evaluated on --split")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--list", type=int, default=0, metavar="K", help="list the images wrong in at least K runs")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        ap.error("give at least two runs")
    try:
        r = agreement(args.runs, args.split)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_runs, n = len(args.runs), len(r["paths"])
    for run, acc in zip(args.runs, r["run_accuracy"]):
        print(f"{Path(run).name:28s} accuracy {acc:.4f}")
    print(f"mean of {n_runs} runs         accuracy {r['run_accuracy'].mean():.4f}")
    print(f"ensemble (mean probability)  accuracy {r['ensemble_accuracy']:.4f}  NLL {r['ensemble_nll']:.4f}")
    counts = np.bincount(r["wrong_count"], minlength=n_runs + 1)
    print(f"{n} images, by how many of the {n_runs} runs got them wrong:")
    print("  " + "  ".join(f"{k}: {c}" for k, c in enumerate(counts)))
    half = int((r["wrong_count"] * 2 > n_runs).sum())
    print(f"wrong in more than half of the runs: {half} ({half / n:.1%}); wrong in every run: {int(counts[-1])}")
    if args.list:
        for i in np.nonzero(r["wrong_count"] >= args.list)[0]:
            p = r["ensemble"][i]
            print(f"  {r['paths'][i]}  {r['labels'][i]} -> {r['classes'][int(p.argmax())]}  "
                  f"wrong in {r['wrong_count'][i]}  mean p {np.round(p, 2).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Summarise sweep runs from their history files: the epoch of lowest validation loss and its accuracy.

    python tools/sweep/summarize.py DIR   # DIR/RUN/history.csv or DIR/RUN.history.csv; prints a Markdown table
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    print("| run | epochs done | best val loss | at epoch | val acc there | max val acc | mean val acc, last 5 |")
    print("|---|---|---|---|---|---|---|")
    found = {h.parent.name: h for h in root.glob("*/history.csv")}
    found.update({h.name.removesuffix(".history.csv"): h for h in root.glob("*.history.csv")})
    for name, hist in sorted(found.items()):
        with open(hist, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        best = min(rows, key=lambda r: float(r["val_loss"]))
        accs = [float(r["val_acc"]) for r in rows]
        print(f"| {name} | {len(rows)} | {float(best['val_loss']):.4f} | {best['epoch']} | "
              f"{100 * float(best['val_acc']):.1f}% | {100 * max(accs):.1f}% | {100 * sum(accs[-5:]) / len(accs[-5:]):.1f}% |")


if __name__ == "__main__":
    main()

"""Summarise sweep runs from their history files: the epoch of lowest validation loss and its accuracy.

    python tools/sweep/summarize.py DIR              # DIR/RUN/history.csv or DIR/RUN.history.csv; a Markdown table
    python tools/sweep/summarize.py DIR --at-epoch 15  # also each run's validation loss/accuracy at that epoch
                                                     # (compares runs cut short at different epochs fairly)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    at = None
    if "--at-epoch" in args:
        k = args.index("--at-epoch")
        at = int(args[k + 1])
        del args[k : k + 2]
    root = Path(args[0] if args else ".")
    extra = f" val loss at epoch {at} | val acc at epoch {at} |" if at else ""
    print("| run | epochs done | best val loss | at epoch | val acc there | max val acc | mean val acc, last 5 |" + extra)
    print("|---|---|---|---|---|---|---|" + ("---|---|" if at else ""))
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
              f"{100 * float(best['val_acc']):.1f}% | {100 * max(accs):.1f}% | {100 * sum(accs[-5:]) / len(accs[-5:]):.1f}% |"
              + (_at(rows, at) if at else ""))


def _at(rows: list[dict], epoch: int) -> str:
    row = next((r for r in rows if int(r["epoch"]) == epoch), None)
    return " - | - |" if row is None else f" {float(row['val_loss']):.4f} | {100 * float(row['val_acc']):.1f}% |"


if __name__ == "__main__":
    main()

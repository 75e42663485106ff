"""Summarise sweep runs from their history files: the epoch of lowest validation loss and its accuracy.

    python tools/sweep/summarize.py DIR              # DIR/RUN/history.csv or DIR/RUN.history.csv; a Markdown table
    python tools/sweep/summarize.py DIR --at-epoch 15  # also each run's validation loss/accuracy at that epoch
                                                     # (compares runs cut short at different epochs fairly)
    python tools/sweep/summarize.py DIR --by-arm       # then one row per arm (runs named ARM-sSEED): the mean,
                                                     # standard deviation and standard error of the best val loss
"""

from __future__ import annotations

import csv
import math
import re
import statistics
import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    at = None
    by_arm = "--by-arm" in args
    if by_arm:
        args.remove("--by-arm")
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
    arms: dict[str, list[float]] = {}
    for name, hist in sorted(found.items()):
        with open(hist, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        best = min(rows, key=lambda r: float(r["val_loss"]))
        arm = re.fullmatch(r"(.+)-s\d+", name)
        if arm:
            arms.setdefault(arm.group(1), []).append(float(best["val_loss"]))
        accs = [float(r["val_acc"]) for r in rows]
        print(f"| {name} | {len(rows)} | {float(best['val_loss']):.4f} | {best['epoch']} | "
              f"{100 * float(best['val_acc']):.1f}% | {100 * max(accs):.1f}% | {100 * sum(accs[-5:]) / len(accs[-5:]):.1f}% |"
              + (_at(rows, at) if at else ""))
    if by_arm:
        print()
        print("| arm | seeds | mean best val loss | sd | standard error |")
        print("|---|---|---|---|---|")
        for arm, losses in sorted(arms.items(), key=lambda kv: statistics.mean(kv[1])):
            sd = statistics.stdev(losses) if len(losses) > 1 else float("nan")
            print(f"| {arm} | {len(losses)} | {statistics.mean(losses):.4f} | {sd:.4f} | {sd / math.sqrt(len(losses)):.4f} |")


def _at(rows: list[dict], epoch: int) -> str:
    row = next((r for r in rows if int(r["epoch"]) == epoch), None)
    return " - | - |" if row is None else f" {float(row['val_loss']):.4f} | {100 * float(row['val_acc']):.1f}% |"


if __name__ == "__main__":
    main()

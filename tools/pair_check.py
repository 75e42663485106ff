"""Two runs side by side: their average on validation, and how many test errors they share.

    lungxray evaluate RUN_A --split val; lungxray evaluate RUN_B --split val   # (test: from `evaluate`/`experiments`)
    python tools/pair_check.py RUN_A RUN_B

Reads RUN/eval-val/predictions.csv and RUN/eval-test/predictions.csv of each run (same images, same order).
The validation lines say whether averaging the two calibrated models would be worth considering; the test line
is error analysis of models already chosen, not a basis for choosing.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def load(run: Path, split: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    with open(run / f"eval-{split}" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = list(rows[0])[4:]  # path, label, prediction, probability, then one column per class
    y = np.array([classes.index(r["label"]) for r in rows])
    return [r["path"] for r in rows], classes, y, np.array([[float(r[c]) for c in classes] for r in rows])


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    for split in ("val", "test"):
        (pa, classes, y, pr_a), (pb, _, _, pr_b) = load(a, split), load(b, split)
        if pa != pb:
            sys.exit(f"{split}: the two runs were not evaluated on the same images")
        if split == "val":
            for name, p in ((a.name, pr_a), (b.name, pr_b), ("mean of both", (pr_a + pr_b) / 2)):
                nll = -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean()
                print(f"val {name:14s} errors {int((p.argmax(1) != y).sum())}  NLL {nll:.3f}")
        else:
            ea, eb = pr_a.argmax(1) != y, pr_b.argmax(1) != y
            first, second = classes[0], classes[1]
            ca, cb = (y == 0) & (pr_a.argmax(1) == 1), (y == 0) & (pr_b.argmax(1) == 1)
            print(f"test {first} called {second}: {ca.sum()} and {cb.sum()}, shared {(ca & cb).sum()}; "
                  f"all errors {ea.sum()} and {eb.sum()}, shared {(ea & eb).sum()}")


if __name__ == "__main__":
    main()

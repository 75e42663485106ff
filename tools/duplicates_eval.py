"""Precision and recall of the re-export detector on a labelled list of pairs, and what it finds in a dataset.

    python tools/duplicates_eval.py --data ../shared/data/covid19-radiography \
        --pairs docs/evidence/duplicates/labelled-pairs.csv \
        --check-split configs/splits/covid19-radiography-seed0.csv configs/splits/covid19-radiography-v2-seed0.csv

Prints, for each labelled pair, the candidate-stage figures (thumbnail correlation, dHash bits) and the
verification score; then precision and recall at several thresholds (the shipped one marked), and the groups
the full detector forms on the whole dataset.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from lungxray.data import duplicates as dup
from lungxray.data.cache import prepare
from lungxray.data.discovery import scan_dataset
from lungxray.data.hashing import _popcount, group_near_duplicates
from lungxray.data.split import read_manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/covid19-radiography")
    ap.add_argument("--pairs", default="docs/evidence/duplicates/labelled-pairs.csv")
    ap.add_argument("--check-split", nargs="*", default=[], metavar="CSV",
                    help="split manifests to check: copies found by the detector that sit in different splits")
    ap.add_argument("--thresholds", default="0.60,0.65,0.68,0.70,0.72,0.75,0.80")
    args = ap.parse_args(argv)

    index = scan_dataset(args.data)
    prep = prepare(index.samples, index.root, (256, 256), progress=False)
    where = {s.path: i for i, s in enumerate(index.samples)}
    with open(args.pairs, newline="", encoding="utf-8") as fh:
        labelled = [r for r in csv.DictReader(fh) if r["label"] in ("duplicate", "different")]

    def image(i: int) -> np.ndarray:
        return np.asarray(prep.images[prep.image_rows[i]])

    print(f"{'label':<10} {'corr32':>7} {'bits':>4} {'cand':>4} {'detail':>6}  pair")
    scored = []
    for r in labelled:
        i, j = where[r["a"]], where[r["b"]]
        ta, tb = dup.thumbnail(image(i)), dup.thumbnail(image(j))
        corr = float(dup.coarse_signature(ta) @ dup.coarse_signature(tb))
        bits = int(_popcount(prep.hashes[i] ^ prep.hashes[j]).sum())
        cand = corr >= dup.CANDIDATE_CORR or bits <= dup.CANDIDATE_BITS
        score = dup.detail_similarity(dup.detail(ta), dup.detail(tb)) if cand else float("nan")
        scored.append((r["label"] == "duplicate", cand, score))
        print(f"{r['label']:<10} {corr:7.4f} {bits:4d} {'yes' if cand else 'no':>4} {score:6.3f}  {r['a']} ~ {r['b']}")

    n_pos = sum(p for p, _, _ in scored)
    n_neg = len(scored) - n_pos
    print(f"\nlabelled pairs: {n_pos} duplicates, {n_neg} look-alike negatives")
    print(f"{'threshold':>9} {'TP':>3} {'FP':>3} {'FN':>3} {'precision':>9} {'recall':>6}")
    for t in (float(x) for x in args.thresholds.split(",")):
        hit = [c and s >= t for _, c, s in scored]
        tp = sum(h and p for h, (p, _, _) in zip(hit, scored))
        fp = sum(h and not p for h, (p, _, _) in zip(hit, scored))
        fn = n_pos - tp
        mark = "  <- shipped" if abs(t - dup.MIN_DETAIL_CORR) < 1e-9 else ""
        print(f"{t:9.2f} {tp:3d} {fp:3d} {fn:3d} {tp / max(tp + fp, 1):9.3f} {tp / max(n_pos, 1):6.3f}{mark}")

    t0 = time.perf_counter()
    pairs = dup.duplicate_pairs([image(i) for i in range(len(index.samples))], prep.hashes)
    elapsed = time.perf_counter() - t0
    groups = group_near_duplicates(len(index.samples), pairs)
    sizes = np.bincount(groups)
    cross = sum(1 for i, j, _ in pairs if index.samples[i].label != index.samples[j].label)
    print(f"\nwhole dataset ({len(index.samples)} images, {elapsed:.0f} s): {len(pairs)} pairs, "
          f"{int((sizes > 1).sum())} groups with {int(sizes[sizes > 1].sum())} images, largest group {int(sizes.max())}, "
          f"{cross} pairs across classes")
    for manifest in args.check_split:
        split_of = {r.path: r.split for r in read_manifest(manifest)}
        across = [(index.samples[i].path, index.samples[j].path) for i, j, _ in pairs
                  if split_of.get(index.samples[i].path) != split_of.get(index.samples[j].path)]
        touching_test = sum("test" in (split_of.get(a), split_of.get(b)) for a, b in across)
        print(f"{manifest}: {len(across)} copies across splits ({touching_test} touching test)")
        for a, b in across[:12]:
            print(f"  {a} ({split_of.get(a)}) ~ {b} ({split_of.get(b)})")


if __name__ == "__main__":
    main()

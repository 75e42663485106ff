"""Which pairs of other image/mask folders are copies of a split's validation or test images, found by content
(the detector that groups re-exports when a split is made), with a picture of the least similar accepted pairs:
the ones a reader should check by eye.

    python tools/held_copies.py --split configs/splits/covid19-radiography-v2-seed0.csv \
        --data ../shared/data/covid19-radiography --png docs/evidence/lung-encoder/qu-ex-copies-of-held-images.png \
        ../shared/data/covid-qu-ex-lungs/Train/COVID-19 ../shared/data/covid-qu-ex-lungs/Train/Non-COVID ...

`segment train --exclude-split-data` leaves exactly these out; this prints them per folder.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from lungxray.data.duplicates import copies_across
from lungxray.segment.data import find_pairs, load_pairs
from lungxray.segment.train import HELD_SIZE, SplitExclusion


def main(argv: list[str] | None = None) -> list[tuple[str, int, int]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="image/mask pair folders to check (as `segment train` reads them)")
    ap.add_argument("--split", required=True, help="the classifier's split manifest")
    ap.add_argument("--data", required=True, help="the dataset folder the manifest's paths are relative to")
    ap.add_argument("--png", help="write the least similar accepted pairs side by side here (folder image left)")
    ap.add_argument("--show", type=int, default=9, help="how many pairs the picture shows [9]")
    args = ap.parse_args(argv)
    held = SplitExclusion.read(args.split, args.data)
    names = sorted(held.held)
    counts, shown = [], []
    for folder in args.folders:
        ps = load_pairs(find_pairs(folder), (HELD_SIZE, HELD_SIZE), progress=False)
        hits = copies_across(ps.images, held.held_images, ps.hashes, held.held_hashes)
        found = sorted({i for i, _, _ in hits})
        counts.append((folder, len(ps), len(found)))
        print(f"{folder}: {len(found)} of {len(ps)} are copies of held images")
        for i, j, score in sorted(hits, key=lambda h: h[2]):
            print(f"  {ps.pairs[i].image.name} <-> {names[j]}  detail similarity {score:.4f}")
            shown.append((score, ps.images[i], held.held_images[j]))
    if args.png and shown:
        rows = [np.concatenate([a, np.full((HELD_SIZE, 8), 255, np.uint8), b], 1)
                for _, a, b in sorted(shown, key=lambda s: s[0])[: args.show]]
        sheet = np.concatenate([np.pad(r, ((4, 4), (0, 0)), constant_values=255) for r in rows], 0)
        Image.fromarray(sheet).save(args.png)
        print(f"{len(rows)} pairs in {args.png}")
    return counts


if __name__ == "__main__":
    main()

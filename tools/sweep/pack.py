"""Pack the train + validation images of a split for a recipe sweep on a rented GPU machine.

The device tool carries at most 64 MiB, so images are resized to SIZE px and stored as JPEG (quality Q) under
the same relative paths (files keep their .png names; Pillow reads them by content). Images are decoded and
resized by lungxray's own reader, as the training cache does, so only the JPEG step differs. Test images are
left out: the sweep selects on validation only.

    python tools/sweep/pack.py [--size 192] [--quality 90]   # writes .gpupack/data and .gpupack/split.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image

from lungxray.data.io import read_image, resize_image, to_uint8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/covid19-radiography")
    ap.add_argument("--split", default="configs/splits/covid19-radiography-v2-seed0.csv")
    ap.add_argument("--out", default=".gpupack")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args()
    src, out = Path(args.data), Path(args.out)
    with open(args.split, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r["split"] in ("train", "val")]
    for r in keep:
        dst = out / "data" / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        img = to_uint8(resize_image(read_image(src / r["path"]), (args.size, args.size)))
        Image.fromarray(img).save(dst, "JPEG", quality=args.quality)
    with open(out / "split.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    print(f"{len(keep)} images ({args.size} px, JPEG q{args.quality}) in {out / 'data'}")


if __name__ == "__main__":
    main()

"""Pack the train + validation images of a split for a recipe sweep on a rented GPU machine.

The device tool carries at most 64 MiB, so images are resized to SIZE px and stored as JPEG (quality Q) under
the same relative paths (files keep their .png names; Pillow reads them by content). Images are decoded and
resized by lungxray's own reader, as the training cache does, so only the JPEG step differs. Test images are
left out: the sweep selects on validation only.

With --lung-view CONFIG, each image is stored as that config's lung-only model sees it before augmentation (the
shipped U-Net's mask, the config's crop, margin and dilation, all by lungxray's own code at SIZE px): the sweep
then trains with masks = "none" on these views, so the GPU machine needs neither the U-Net nor the raw images,
and its CPU cores only augment. Only the JPEG step differs from `lungxray train` with the config itself.

    python tools/sweep/pack.py [--size 192] [--quality 90]   # writes .gpupack/data and .gpupack/split.csv
    python tools/sweep/pack.py --size 224 --quality 95 --lung-view configs/lungs-prog.toml
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lungxray.data.io import read_image, resize_image, to_uint8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/covid19-radiography")
    ap.add_argument("--split", default="configs/splits/covid19-radiography-v2-seed0.csv")
    ap.add_argument("--out", default=".gpupack")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--lung-view", metavar="CONFIG", help="store the lung view this config's model sees")
    args = ap.parse_args()
    src, out = Path(args.data), Path(args.out)
    with open(args.split, newline="") as f:
        rows = list(csv.DictReader(f))
    # Provided masks are not packed (the sweeps use none or predicted ones): the column is emptied so the machine
    # does not warn about every missing file.
    keep = [{**r, "mask_path": ""} for r in rows if r["split"] in ("train", "val")]
    images = _lung_views(src, args.split, args.size, args.lung_view) if args.lung_view else None
    if images is not None:  # images lungxray could not read are left out of the pack and its split, and counted
        unread = [r["path"] for r in keep if r["path"] not in images]
        keep = [r for r in keep if r["path"] in images]
        if unread:
            print(f"left out {len(unread)} unreadable image(s), e.g. {unread[0]}")
    total = 0
    for r in keep:
        dst = out / "data" / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if images is not None:
            img = images[r["path"]]
        else:
            img = to_uint8(resize_image(read_image(src / r["path"]), (args.size, args.size)))
        Image.fromarray(img).save(dst, "JPEG", quality=args.quality)
        total += dst.stat().st_size
    with open(out / "split.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    kind = f"lung views of {args.lung_view}" if args.lung_view else "whole images"
    print(f"{len(keep)} {kind} ({args.size} px, JPEG q{args.quality}, {total / 2**20:.1f} MiB) in {out / 'data'}")


def _lung_views(src: Path, split_csv: str, size: int, config: str) -> dict[str, "np.ndarray"]:
    """{relative path: (size, size) uint8 lung view} for the train and validation images, by lungxray's own code."""
    from lungxray.config import load_config
    from lungxray.data import load_split
    from lungxray.inference import check_masks, iter_batches

    cfg = load_config(config)
    view = cfg.lung_view()
    if view.read_size:  # read at the config's read_size, crop to the size asked for here
        view = dataclasses.replace(view, out_size=size)
    split = load_split(src, split_csv, cfg.classes, view.image_size((size, size)), masks=cfg.masks)
    idx = np.concatenate([split.indices("train"), split.indices("val")])
    check_masks(split, idx, cfg.masks)  # as training does: a missing provided mask is an error, not another's mask
    views = {}
    for chunk, x in iter_batches(split, idx, cfg.masks, 64, view=view):
        for i, img in zip(chunk, x[:, 0].mul(255).round().clamp(0, 255).to(torch.uint8).numpy()):
            views[split.rows[i].path] = img
    return views


if __name__ == "__main__":
    main()

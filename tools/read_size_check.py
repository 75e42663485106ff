"""What reading images larger than a lung-only model's input changes: how much of the film the lung crop keeps,
how far the masks predicted from the two reads differ, and how much fine detail the model's input keeps.

    python tools/read_size_check.py --small 96 --grow-small 4 --large 224 --grow-large 9

For the split's training images (the crop's size) and validation images (the masks), from the lungxray cache
(masks predicted by the shipped U-Net, as training does). A measurement to explain a recipe's figures, not one.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from lungxray.data.api import load_split
from lungxray.inference import load_batch
from lungxray.preprocess import LungView, dilate_mask, lung_box_theta


def crop_share(masks: torch.Tensor, grow: int, margin: float) -> np.ndarray:
    """Side of each lung crop as a share of the film's side (1 = the whole film; more where the box leaves it)."""
    return lung_box_theta(dilate_mask(masks, grow), margin)[:, 0, 0].numpy()


def dice_after_resize(small: torch.Tensor, large: torch.Tensor) -> np.ndarray:
    """Dice between (N, 1, h, w) masks and (N, 1, H, W) masks brought to (h, w) by area averaging (> 0.5)."""
    a = small > 0.5
    b = F.interpolate(large.float(), size=tuple(small.shape[-2:]), mode="area") > 0.5
    inter = (a & b).sum((1, 2, 3)).float()
    total = (a.sum((1, 2, 3)) + b.sum((1, 2, 3))).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total)).numpy()


def detail(x: torch.Tensor) -> np.ndarray:
    """Mean absolute difference between horizontally and vertically neighbouring pixels where both are inside the
    view (non-zero), per image: how much fine detail (and noise) an (N, 1, H, W) model input carries."""
    dx, dy = (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()
    kx, ky = (x[..., :, 1:] > 0) & (x[..., :, :-1] > 0), (x[..., 1:, :] > 0) & (x[..., :-1, :] > 0)
    total = (dx * kx).sum((1, 2, 3)) + (dy * ky).sum((1, 2, 3))
    return (total / (kx.sum((1, 2, 3)) + ky.sum((1, 2, 3))).clamp_min(1)).numpy()


def _masks(split, idx: np.ndarray) -> torch.Tensor:
    p = split.prepared
    return torch.from_numpy(np.asarray(p.masks[p.mask_rows[idx]])).float().unsqueeze(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/covid19-radiography")
    ap.add_argument("--split", default="configs/splits/covid19-radiography-v2-seed0.csv")
    ap.add_argument("--small", type=int, default=96, help="the model's input size [96]")
    ap.add_argument("--large", type=int, default=224, help="the larger read [224]")
    ap.add_argument("--grow-small", type=int, default=4, help="mask growth (px) at the small size [4]")
    ap.add_argument("--grow-large", type=int, default=9, help="mask growth (px) at the large size [9]")
    ap.add_argument("--margin", type=float, default=0.05)
    args = ap.parse_args(argv)
    splits = {s: load_split(args.data, args.split, None, (s, s), progress=False, masks="predicted")
              for s in (args.small, args.large)}
    if [r.path for r in splits[args.small].rows] != [r.path for r in splits[args.large].rows]:
        raise SystemExit("the two reads list other images")  # one manifest: cannot happen unless the cache is broken
    train = splits[args.small].indices("train")
    for size, grow in ((args.small, args.grow_small), (args.large, args.grow_large)):
        share = crop_share(_masks(splits[size], train), grow, args.margin)
        print(f"{size}-px read, mask grown {grow} px: lung crop side / film side over {len(train)} training images: "
              f"median {np.median(share):.3f} (quartiles {np.quantile(share, 0.25):.3f}-{np.quantile(share, 0.75):.3f})")
    val = splits[args.small].indices("val")
    dice = dice_after_resize(_masks(splits[args.small], val), _masks(splits[args.large], val))
    print(f"validation ({len(val)} images): Dice between the masks predicted from the {args.small}-px read and from "
          f"the {args.large}-px read (brought to {args.small} px): median {np.median(dice):.3f}, 5th percentile "
          f"{np.quantile(dice, 0.05):.3f}, minimum {dice.min():.3f}")
    views = {args.small: LungView(crop=True, margin=args.margin, dilate=args.grow_small),
             args.large: LungView(crop=True, margin=args.margin, dilate=args.grow_large, read_size=args.large,
                                  out_size=args.small)}
    for size, view in views.items():
        d = np.concatenate([detail(load_batch(splits[size], val[i : i + 64], "predicted", view=view))
                            for i in range(0, len(val), 64)])
        print(f"model input ({args.small} px) from the {size}-px read: mean neighbour difference inside the lungs "
              f"{np.mean(d):.4f} (validation)")


if __name__ == "__main__":
    main()

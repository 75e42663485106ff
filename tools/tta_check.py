"""Would test-time augmentation help? Score a run on its validation split with the model input as trained, and with
the softmax averaged over small fixed warps of it (zooms, shifts, rotations), at the run's temperature.

    python tools/tta_check.py --run runs/lungs-prog --data ../shared/data/covid19-radiography

Validation only: a measurement to decide whether TTA is worth building into prediction (it multiplies the
classifier's cost by the number of views), not a figure to report as accuracy.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from lungxray.checkpoint import load_checkpoint
from lungxray.data.api import load_split
from lungxray.data.transforms import affine_matrices, apply_affine
from lungxray.inference import iter_batches
from lungxray.preprocess import LungView, read_size


def warp(zoom: float = 1.0, shift: float = 0.0, degrees: float = 0.0) -> torch.Tensor:
    """One 2x3 affine matrix, as training's augmentation builds them: zoom > 1 enlarges the image, `shift` moves
    it sideways in affine_grid's normalised coordinates (the side spans 2)."""
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    return affine_matrices(one(math.radians(degrees)), one(zoom), one(0.0), one(shift), one(0.0), one(1.0))[0]


VIEW_SETS = {
    "none": [warp()],
    "zoom": [warp(), warp(zoom=0.95), warp(zoom=1.05)],
    "shift": [warp(), warp(shift=0.04), warp(shift=-0.04)],
    "rotate": [warp(), warp(degrees=5), warp(degrees=-5)],
    "all5": [warp(), warp(zoom=0.95), warp(zoom=1.05), warp(degrees=5), warp(degrees=-5)],
}


@torch.no_grad()
def averaged_probs(model: torch.nn.Module, batches, views: list[torch.Tensor], temperature: float) -> np.ndarray:
    """Softmax at `temperature` averaged over `views` (each a 2x3 warp applied to the whole batch)."""
    model.eval()
    out = []
    for _, x in batches:
        p = sum(torch.softmax(model(apply_affine(x, v.expand(len(x), 2, 3))) / temperature, 1) for v in views)
        out.append(p / len(views))
    return torch.cat(out).numpy()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", default="../shared/data/covid19-radiography")
    ap.add_argument("--split-name", default="val", choices=("train", "val"), help="never test: this is for choosing")
    args = ap.parse_args(argv)
    model, meta = load_checkpoint(args.run)
    split = load_split(args.data, f"{args.run}/split.csv", meta["classes"], read_size(meta),
                       masks=meta.get("masks", "none"), progress=False)
    idx = split.indices(args.split_name)
    y = split.labels()[idx]
    temperature = float(meta.get("temperature", 1.0))
    print(f"{args.run} on {args.split_name} ({len(idx)} images), temperature {temperature:.3f}")
    print(f"{'views':<8} {'n':>2} {'accuracy':>8} {'NLL':>7}")
    for name, views in VIEW_SETS.items():
        batches = iter_batches(split, idx, meta.get("masks", "none"), 64, view=LungView.from_meta(meta))
        p = averaged_probs(model, batches, views, temperature)
        nll = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())
        print(f"{name:<8} {len(views):>2} {float((p.argmax(1) == y).mean()):>8.1%} {nll:>7.4f}")


if __name__ == "__main__":
    main()

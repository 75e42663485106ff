"""How often the out-of-distribution guard flags real test X-rays, and inputs that are not frontal chest X-rays.

    python benchmarks/ood.py --data ../shared/data/covid19-radiography --split configs/splits/covid19-radiography-v2-seed0.csv

For up to --n test-split images it prints the share flagged as they are, and after transformations that turn
them into something the classifier was not trained for (rotated 90 degrees, upside down, a negative, a zoom
into one corner), plus a photograph (matplotlib's sample portrait, in grayscale so the colour check alone
cannot catch it), uniform noise and a blank image. The guard is what `lungxray predict` runs: input checks,
then the Mahalanobis distances of penultimate features and of a coarse layout thumbnail against the
thresholds stored with the model (`lungxray.ood`).
Real lateral views are not in this data set, so they are not measured here.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image


def _conditions(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape
    return {
        "as is (in distribution)": img,
        "rotated 90 degrees": np.rot90(img).copy(),
        "upside down": img[::-1].copy(),
        "negative (inverted)": 1.0 - img,
        "zoom into one corner": np.asarray(
            Image.fromarray((img[: h // 3, : w // 3] * 255).astype(np.uint8)).resize((w, h)), dtype=np.float32) / 255.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="run folder or weights (default: the shipped model)")
    ap.add_argument("--data", default="../shared/data/covid19-radiography")
    ap.add_argument("--split", default="configs/splits/covid19-radiography-v2-seed0.csv")
    ap.add_argument("--n", type=int, default=300, help="test images to use (random, seeded)")
    args = ap.parse_args()

    import matplotlib.cbook

    from lungxray.data.io import read_image
    from lungxray.predict import Predictor

    pred = Predictor.load(args.run)  # None: the shipped model
    with open(args.split) as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    random.Random(0).shuffle(rows)
    rows = rows[: args.n]
    flagged: dict[str, list[bool]] = {}
    for r in rows:
        img = read_image(Path(args.data) / r["path"])
        for name, x in _conditions(img).items():
            flagged.setdefault(name, []).append(pred.predict_array(x, cam=False).ood["flagged"])
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        photo = np.asarray(Image.open(fh).convert("L"), dtype=np.float32) / 255.0
    rng = np.random.default_rng(0)
    extra = {
        "photograph, grayscale (1 image)": [photo],
        "uniform noise (20 images)": [rng.random((256, 256), dtype=np.float32) for _ in range(20)],
        "blank (1 image)": [np.full((256, 256), 0.5, dtype=np.float32)],
    }
    for name, imgs in extra.items():
        flagged[name] = [pred.predict_array(x, cam=False).ood["flagged"] for x in imgs]
    print(f"model: {pred.describe()['name']} ({os.path.relpath(pred.checkpoint)})  OOD threshold: {(pred.meta.get('ood') or {}).get('threshold')}")
    print(f"{'input':<34} {'images':>6} {'flagged':>8}")
    for name, f in flagged.items():
        print(f"{name:<34} {len(f):>6} {100 * np.mean(f):>7.1f}%")


if __name__ == "__main__":
    main()

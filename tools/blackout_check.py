"""The lungs-removed check as the held-out evaluation of issue 13 runs it: black out the lungs in the image file
itself, then send it through the whole prediction pipeline (a lung-only model segments the blacked-out image
again, crops and masks it, exactly as in use).

    python tools/blackout_check.py --model runs/lungs --model runs/OTHER \
        --data ../shared/data/covid19-radiography --split configs/splits/covid19-radiography-v2-seed0.csv

For each model, on the test split (or, with `--subset val`, the validation split: for choosing between recipes
without looking at test): accuracy and COVID-versus-rest AUC with the whole image and with the lungs
blacked out (the shipped U-Net's masks, grown by 4 px), the share of COVID films still called COVID, and the
share of films in which the pipeline found no lungs (mask under 1% of the model's input, `MIN_LUNG_SHARE`:
flagged "no lungs found").

What it measures for a lung-only model: whether anything from outside the lungs reaches the answer once the lungs
are gone. The segmenter then finds no lungs in almost every film, so the model sees a black frame or a small
fragment the U-Net still took for lung; a pipeline that fell back to the whole image would show here. It does not
measure what the model reads inside the lungs: `lungxray audit`'s lung-texture-removed check does. The blackout
is done in the file's own frame, as the held-out evaluation does it; on the 299-px Viral Pneumonia films the
4 px growth is about 3 px at the model's 224 px, so a thin rim of the model's own grown mask can stay visible.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from lungxray.data.io import read_image
from lungxray.predict import Predictor
from lungxray.preprocess import dilate_mask
from lungxray.segment import Segmenter


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--data", default="../shared/data/covid19-radiography")
    ap.add_argument("--split", default="configs/splits/covid19-radiography-v2-seed0.csv")
    ap.add_argument("--grow", type=int, default=4, help="pixels the lung mask is grown by before blacking out")
    ap.add_argument("--subset", choices=("test", "val"), default="test", help="which split's images [test]")
    ap.add_argument("--class-blind", action="store_true",
                    help="also print the accuracy of a class-blind guess in the class proportions (sum of squared "
                         "shares): where a model with no information lands, below the majority-class chance")
    ap.add_argument("--by-class", action="store_true",
                    help="also print, for the blacked-out films of each class, the share called each class")
    args = ap.parse_args(argv)
    with open(args.split, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == args.subset]
    seg = Segmenter.load()
    images = [read_image(Path(args.data) / r["path"]) for r in rows]
    blacked = []
    for start in range(0, len(images), 32):
        chunk = images[start : start + 32]
        for img, m in zip(chunk, seg.predict(chunk)):
            grown = dilate_mask(torch.from_numpy(np.asarray(m, np.float32))[None, None], args.grow)[0, 0].numpy()
            blacked.append(img * (1.0 - grown))
    shares = [np.mean([r["label"] == c for r in rows]) for c in sorted({r["label"] for r in rows})]
    chance = max(shares)
    print(f"{args.subset} split: {len(rows)} images, chance (majority class) {chance:.1%}; lungs grown by {args.grow} px")
    if args.class_blind:  # what a model with no information scores when it guesses in the class proportions
        print(f"class-blind guess in the class proportions: {sum(p * p for p in shares):.1%}")
    print(f"{'model':<26} {'input':<16} {'accuracy':>8} {'COVID-vs-rest AUC':>17} {'COVID called COVID':>18} "
          f"{'no lungs found':>14}")
    for model in args.model:
        pred = Predictor.load(model)
        y = np.array([r["label"] for r in rows])
        for name, pics in (("whole image", images), ("lungs blacked out", blacked)):
            res = [pred.predict_array(p, name=r["path"], cam=False) for p, r in zip(pics, rows)]
            called = np.array([x.prediction for x in res])
            p_covid = np.array([x.probabilities["COVID"] for x in res])
            acc = float((called == y).mean())
            auc = roc_auc_score(y == "COVID", p_covid)
            kept = float((called[y == "COVID"] == "COVID").mean())
            # The pipeline's own verdict (the model's input mask under MIN_LUNG_SHARE of it), from its OOD reasons.
            lungless = float(np.mean([any(r.startswith("no lungs found") for r in x.ood.get("reasons", []))
                                      for x in res]))
            print(f"{Path(model).name:<26} {name:<16} {acc:>8.1%} {auc:>17.3f} {kept:>18.1%} {lungless:>14.1%}")
        if args.by_class:
            classes = list(res[0].probabilities)
            print(f"  lungs blacked out, called as: {'true class':<16} {'n':>4} " + " ".join(f"{c:>16}" for c in classes))
            for c in classes:
                got = called[y == c]
                print(f"  {'':<29} {c:<16} {len(got):>4} " + " ".join(f"{np.mean(got == k):>16.1%}" for k in classes))


if __name__ == "__main__":
    main()

"""How a model treats pneumonia it was not trained for: the COVID-QU-Ex `Non-COVID` films (issue 13, item 4).

    python tools/out_of_scope.py --model runs/lungs [--model ANOTHER ...] [--data ../shared/data/covid-qu-ex-lungs]

For each model, over the Train + Val folders (`--folders Val` for the films the shipped lung U-Net did not train
on: it learnt from COVID-QU-Ex `Train`'s masks, so those films get masks from a segmenter that saw them): the share of Non-COVID films called COVID, called COVID with
probability > 0.9, and flagged by the out-of-distribution guard. The same figures for COVID-QU-Ex's own COVID-19
and Normal films (256 px crops from the same pipeline) show whether the crop itself pushes a model one way: a
model that had learnt "this crop means not COVID" would also lose its COVID-19 films here.
(COVID-QU-Ex shares radiographs with the Radiography Database, so this is no independent test of accuracy.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lungxray.predict import Predictor

GROUPS = ("Non-COVID", "COVID-19", "Normal")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="run folder or .safetensors (repeatable)")
    ap.add_argument("--data", default="../shared/data/covid-qu-ex-lungs")
    ap.add_argument("--folders", nargs="+", default=["Train", "Val"], choices=("Train", "Val"),
                    help="which COVID-QU-Ex folders to score [Train Val]")
    args = ap.parse_args(argv)
    root = Path(args.data)
    print(f"{'model':<28} {'films':<10} {'n':>4} {'called COVID':>12} {'COVID p>0.9':>11} {'OOD flagged':>11} "
          f"{'called Normal':>13} {'called VP':>9}")
    for model in args.model:
        pred = Predictor.load(model)
        for group in GROUPS:
            files = sorted(p for split in args.folders for p in (root / split / group / "images").glob("*.png"))
            res = list(pred.predict_paths(files, batch_size=32))
            n = len(res)
            covid = sum(r.prediction == "COVID" for r in res)
            sure = sum(r.prediction == "COVID" and r.probability > 0.9 for r in res)
            ood = sum(bool(r.ood.get("flagged")) for r in res)
            normal = sum(r.prediction == "Normal" for r in res)
            vp = sum(r.prediction == "Viral Pneumonia" for r in res)
            print(f"{Path(model).name:<28} {group:<10} {n:>4} {covid / n:>12.1%} {sure / n:>11.1%} {ood / n:>11.1%} "
                  f"{normal / n:>13.1%} {vp / n:>9.1%}")


if __name__ == "__main__":
    main()

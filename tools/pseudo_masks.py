"""Image/mask pairs for a split's training images that have no masks, the masks predicted by a lung U-Net.

Why: the lung encoder a classifier starts from learns the images it is shown. The COVID and Normal images of the
Radiography Database have no masks here, so a U-Net trained on the real masks never sees them; with masks
predicted for them (by a U-Net that itself never saw the split's validation or test images) they can join its
training. Only the manifest's `--subset` rows (training, by default) are written, so nothing held out enters.

    python tools/pseudo_masks.py --split configs/splits/covid19-radiography-v2-seed0.csv \
        --data ../shared/data/covid19-radiography --label COVID --label Normal \
        --weights runs/lung-unet-clean --out runs/pseudo-train

writes `<out>/<label>/images/X.png` (links to the dataset's files) and `<out>/<label>/masks/X.png` (256x256,
lung = 255), the layout `lungxray segment train --data` reads, and `<out>/pseudo-masks.json` (what made them).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lungxray.data.split import manifest_fingerprint, read_manifest
from lungxray.errors import ConfigError
from lungxray.segment.inference import Segmenter
from lungxray.segment.predict import predict_files
from lungxray.utils import write_json


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", required=True, help="the classifier's split manifest")
    ap.add_argument("--data", required=True, help="the dataset folder the manifest's paths are relative to")
    ap.add_argument("--label", action="append", required=True, help="a class to write (repeatable)")
    ap.add_argument("--subset", default="train", choices=("train",),
                    help="which rows [train]; validation and test images are never written")
    ap.add_argument("--weights", required=True, help="the U-Net (a `segment train` run folder or .safetensors)")
    ap.add_argument("--out", required=True, help="a new folder")
    ap.add_argument("--size", type=int, default=256, help="mask size [256, the Radiography Database's]")
    args = ap.parse_args(argv)
    out, data = Path(args.out), Path(args.data)
    if out.exists():
        raise SystemExit(f"error: {out} exists; give a new folder")
    rows = read_manifest(args.split)
    known = sorted({r.label for r in rows})
    unknown = [lab for lab in args.label if lab not in known]
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)} not in {args.split} (its classes: {', '.join(known)})")
    seg = Segmenter.load(args.weights)
    counts = {}
    for label in args.label:
        chosen = [data / r.path for r in rows if r.label == label and r.split == args.subset]
        missing = [p for p in chosen if not p.is_file()]
        if missing:
            raise SystemExit(f"error: {missing[0]}: not found ({len(missing)} missing); is --data the manifest's dataset?")
        images = out / label / "images"
        images.mkdir(parents=True)
        for p in chosen:
            os.symlink(os.path.relpath(p.resolve(), images.resolve()), images / p.name)
        try:
            report = predict_files(chosen, out / label / "masks", seg, size=(args.size, args.size))
        except ConfigError as exc:
            raise SystemExit(f"error: {exc}") from None
        if report.skipped:
            raise SystemExit(f"error: {report.skipped[0][0]}: {report.skipped[0][1]}")
        counts[label] = len(report.masks)
        print(f"{label}: {len(report.masks)} masks in {out / label / 'masks'}")
    meta = {"split": Path(args.split).name, "split_fingerprint": manifest_fingerprint(rows), "subset": args.subset,
            "weights": str(args.weights), "mask_size": args.size, "counts": counts}
    write_json(out / "pseudo-masks.json", meta)
    return meta


if __name__ == "__main__":
    main()

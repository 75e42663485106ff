"""Image/mask pairs for a split's training images that have no masks, the masks predicted by a lung U-Net.

Why: the lung encoder a classifier starts from learns the images it is shown. The COVID and Normal images of the
Radiography Database have no masks here, so a U-Net trained on the real masks never sees them; with masks
predicted for them (by a U-Net that itself never saw the split's validation or test images) they can join its
training. Only the manifest's training rows are written, so nothing held out enters; the U-Net's own metadata is
checked against the manifest (a warning, and a record in the JSON, when it was not kept away from that split).

    python tools/pseudo_masks.py --split configs/splits/covid19-radiography-v2-seed0.csv \
        --data ../shared/data/covid19-radiography --label COVID --label Normal \
        --weights runs/lung-unet-clean --out runs/pseudo-train

writes `<out>/<label>/images/X.png` (relative links to the dataset's files) and `<out>/<label>/masks/X.png`
(256x256, lung = 255), the layout `lungxray segment train --data` reads, and `<out>/pseudo-masks.json` (what made
them). It writes into `<out>.partial` and renames at the end, so a failed run leaves no half folder behind.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

from lungxray.data.split import manifest_fingerprint, read_manifest
from lungxray.errors import LungxrayError
from lungxray.models.pretrained import segmenter_split
from lungxray.segment.inference import Segmenter
from lungxray.segment.predict import predict_files
from lungxray.utils import write_json


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", required=True, help="the classifier's split manifest")
    ap.add_argument("--data", required=True, help="the dataset folder the manifest's paths are relative to")
    ap.add_argument("--label", action="append", required=True, help="a class to write (repeatable)")
    ap.add_argument("--weights", required=True, help="the U-Net (a `segment train` run folder or .safetensors)")
    ap.add_argument("--out", required=True, help="a new folder")
    ap.add_argument("--size", type=int, default=256, help="mask size [256, the Radiography Database's]")
    args = ap.parse_args(argv)
    try:
        return _write(args)
    except LungxrayError as exc:
        raise SystemExit(f"error: {exc}") from None


def _write(args) -> dict:
    out, data = Path(args.out), Path(args.data)
    partial = out.with_name(out.name + ".partial")
    for p in (out, partial):
        if p.exists():
            raise SystemExit(f"error: {p} exists; give a new folder (or remove it)")
    rows = read_manifest(args.split)
    fingerprint = manifest_fingerprint(rows)
    labels = list(dict.fromkeys(args.label))
    known = sorted({r.label for r in rows})
    unknown = [lab for lab in labels if lab not in known]
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)} not in {args.split} (its classes: {', '.join(known)})")
    chosen = {lab: [data / r.path for r in rows if r.label == lab and r.split == "train"] for lab in labels}
    for lab, paths in chosen.items():  # every check before anything is written
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"error: {missing[0]}: not found ({len(missing)} missing); is --data the manifest's dataset?")
        names = [p.name.lower() for p in paths]
        if len(set(names)) != len(names):
            raise SystemExit(f"error: {lab}: two training images share a file name; they cannot share one folder")
    weights = Path(args.weights)
    weights_file = weights / "best.safetensors" if weights.is_dir() else weights
    seg = Segmenter.load(weights)
    left_out = segmenter_split(weights_file)
    kept_away = bool(left_out) and left_out.get("fingerprint") == fingerprint
    if not kept_away:
        print(f"warning: {weights} was not trained with this split's validation and test images left out "
              "(segment train --exclude-split); its masks may carry what it learned from them", file=sys.stderr)
    counts = {}
    try:
        for lab, paths in chosen.items():
            images = partial / lab / "images"
            images.mkdir(parents=True)
            for p in paths:
                os.symlink(os.path.relpath(p.resolve(), images.resolve()), images / p.name)
            report = predict_files(paths, partial / lab / "masks", seg, size=(args.size, args.size))
            if report.skipped:
                raise SystemExit(f"error: {report.skipped[0][0]}: {report.skipped[0][1]}")
            counts[lab] = len(report.masks)
        meta = {"split": Path(args.split).name, "split_fingerprint": fingerprint, "subset": "train",
                "weights": weights.name, "weights_sha256": hashlib.sha256(weights_file.read_bytes()).hexdigest(),
                "weights_left_out_this_split": kept_away, "mask_size": args.size, "counts": counts}
        write_json(partial / "pseudo-masks.json", meta)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out)
    for lab, n in counts.items():
        print(f"{lab}: {n} masks in {out / lab / 'masks'}")
    return meta


if __name__ == "__main__":
    main()

"""Lung segmentation figures: Dice and HD95 per validation set, latency at batch 1, throughput at batch 32.

    python benchmarks/segmentation.py \
        --val ../shared/data/covid-qu-ex-lungs/Val \
        --heldout "../shared/data/covid19-radiography/Viral Pneumonia"

`--heldout` scores exactly the files the model's metadata lists as held out of training for that folder.
Prints a Markdown block (pasted as is into docs/RESULTS.md); `--json` also saves every per-image score.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lungxray.data.io import read_image
from lungxray.errors import DatasetError
from lungxray.segment import Segmenter, default_segmenter_path, evaluate_pairs, find_pairs
from lungxray.segment.train import source_name

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"


def heldout_pairs(folder: str, meta: dict) -> tuple[str, list]:
    """The pairs of `folder` that the model's metadata lists as held out (all of them must exist)."""
    name = source_name(folder)
    entries = {k: v for k, v in meta["training"].get("heldout", {}).items() if v["source"] == name}
    if not entries:
        known = [v["source"] for v in meta["training"].get("heldout", {}).values()]
        raise DatasetError(f"the model holds nothing out of {name!r}; its held-out sources: {known}")
    (label, entry), = entries.items()
    by_key = {p.key: p for p in find_pairs(folder, name)}
    missing = [f for f in entry["files"] if f not in by_key]
    if missing:
        raise DatasetError(f"{len(missing)} held-out file(s) missing from {folder}, e.g. {missing[0]}")
    return label, [by_key[f] for f in entry["files"]]


def split_held_pairs(folder: str, manifest: str) -> tuple[str, list]:
    """The pairs of `folder` whose image the classifier split `manifest` puts in val or test."""
    from lungxray.segment.train import SplitExclusion

    exclusion = SplitExclusion.read(manifest)
    pairs = [p for p in find_pairs(folder, source_name(folder)) if exclusion.holds(p.image)]
    if not pairs:
        raise DatasetError(f"none of the pairs of {folder} is in the val or test split of {manifest}")
    return f"{source_name(folder)} (val + test of {Path(manifest).name})", pairs


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def mask_stats(dataset: str) -> list[dict]:
    """Per class: masks found, median and 1st/99th percentile lung fraction, count by number of regions."""
    from scipy import ndimage

    from lungxray.data.discovery import scan_dataset
    from lungxray.data.io import read_mask

    index = scan_dataset(dataset)
    rows = []
    for cls in index.classes:
        fractions, regions = [], []
        for s in index.samples:
            if s.label == cls and s.mask_path:
                m = read_mask(index.root / s.mask_path)
                fractions.append(float(m.mean()))
                regions.append(int(ndimage.label(m, structure=np.ones((3, 3)))[1]))
        f = np.array(fractions) if fractions else np.zeros(1)
        rows.append({"class": cls, "masks": len(fractions), "median": float(np.median(f)), "p1": float(np.percentile(f, 1)),
                     "p99": float(np.percentile(f, 99)), "regions": dict(sorted(Counter(regions).items()))})
    return rows


def time_calls(fn, runs: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="Weights or run folder (default: the shipped model).")
    ap.add_argument("--val", action="append", default=[], help="Folder of image/mask pairs, scored in full (repeatable).")
    ap.add_argument("--heldout", action="append", default=[], help="Folder whose held-out files (from the metadata) are scored.")
    ap.add_argument("--split-held", action="append", default=[], metavar="FOLDER",
                    help="Folder whose pairs a classifier split (--split) puts in val or test are scored: the "
                         "images the classifier is scored on, for a U-Net trained with --exclude-split SPLIT.")
    ap.add_argument("--split", default=None, help="Split manifest for --split-held.")
    ap.add_argument("--latency-runs", type=int, default=300, help="Timed single-image calls (the median is reported).")
    ap.add_argument("--batch", type=int, default=32, help="Batch size for the throughput figure.")
    ap.add_argument("--batch-runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores).")
    ap.add_argument("--amp", action="store_true", help="Run the network under bfloat16 autocast.")
    ap.add_argument("--skip-latency", action="store_true", help="Only score the validation sets.")
    ap.add_argument("--mask-stats", default=None, metavar="DATASET",
                    help="Also summarise the masks found in a Radiography Database folder (e.g. after fill-masks).")
    ap.add_argument("--json", dest="json_out", default=None, help="Also write all figures and per-image scores here.")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    seg = Segmenter.load(args.weights, batch_size=args.batch, amp=args.amp)
    weights = Path(args.weights) if args.weights else default_segmenter_path()
    meta = seg.meta
    results: dict = {"weights": weights.name, "threads": args.threads, "amp": args.amp, "cpu": cpu_name(),
                     "torch": torch.__version__, "sets": {}}

    sets = [(source_name(v), find_pairs(v, source_name(v))) for v in args.val]
    sets += [heldout_pairs(h, meta) for h in args.heldout]
    if args.split_held and not args.split:
        ap.error("--split-held needs --split SPLIT.csv")
    sets += [split_held_pairs(f, args.split) for f in args.split_held]
    for label, pairs in sets:
        res = evaluate_pairs(seg, pairs, progress=sys.stderr.isatty(), desc=f"scoring {label}")
        results["sets"][label] = res

    if not args.skip_latency:
        # One real radiograph per call: a Radiography Database image (299x299, from the last set given: the
        # held-out one), as users will have; the bundled sample when no set is given.
        probe_pairs = sets[-1][1] if sets else find_pairs(SAMPLE / "Viral Pneumonia")
        results["latency"] = measure_latency(seg, probe_pairs, args.latency_runs, args.batch, args.batch_runs)
    if args.mask_stats:
        results["mask_stats"] = mask_stats(args.mask_stats)
    print_report(results, seg, weights, args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


def measure_latency(seg: Segmenter, pairs: list, runs: int, batch: int, batch_runs: int) -> dict:
    """End-to-end (resize, U-Net, upsampling, post-processing) timings at batch 1 and at `batch`."""
    probe = read_image(pairs[0].image)
    load0 = os.getloadavg()[0]
    single = time_calls(lambda: seg.predict([probe]), runs)
    x1 = np.stack([seg.preprocess(probe)])
    network = time_calls(lambda: seg.probabilities(x1), runs)
    same_size = [im for im in (read_image(p.image) for p in pairs[:batch]) if im.shape == probe.shape]
    stack = np.stack((same_size * batch)[:batch])
    batched = time_calls(lambda: seg.predict(stack), batch_runs, warmup=2)
    return {
        "image_shape": list(probe.shape),
        "runs": runs,
        "batch1_median_ms": 1000 * statistics.median(single),
        "batch1_p90_ms": 1000 * float(np.percentile(single, 90)),
        "batch1_network_only_median_ms": 1000 * statistics.median(network),
        "batch": batch,
        "batch_median_s": statistics.median(batched),
        "images_per_s": batch / statistics.median(batched),
        "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def print_report(results: dict, seg: Segmenter, weights: Path, args) -> None:
    """The Markdown block pasted into docs/RESULTS.md."""
    tr = seg.meta.get("training", {})
    print(f"### Lung segmentation benchmark ({weights.name}, input {seg.input_size[0]}x{seg.input_size[1]})\n")
    print(f"CPU: {results['cpu']}, torch {results['torch']}, {args.threads} threads, "
          f"{'bfloat16 autocast' if args.amp else 'float32'}; trained {tr.get('epochs_run', '?')} epochs "
          f"in {tr.get('seconds_all_epochs', float('nan')) / 60:.1f} min (best epoch {tr.get('best_epoch', '?')})\n")
    if results["sets"]:
        print("| validation set | images | Dice mean | Dice median | Dice min | HD95 mean (px) | HD95 median (px) | HD95 p95 (px) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for label, res in results["sets"].items():
            d, h = res["dice"], res["hd95"]
            bad = f" ({h['non_finite']} empty)" if h.get("non_finite") else ""
            print(f"| {label} | {res['n']} | {d['mean']:.4f} | {d['median']:.4f} | {d['min']:.4f} | "
                  f"{h['mean']:.2f}{bad} | {h['median']:.2f} | {h['p95']:.2f} |")
        print("\nHD95 in pixels of the 256x256 reference masks.\n")
    lat = results.get("latency")
    if lat:
        print(f"Latency on a {lat['image_shape'][0]}x{lat['image_shape'][1]} image, end to end (resize, U-Net, "
              f"upsampling, post-processing), {lat['runs']} calls:\n")
        print("| figure | value |")
        print("|---|---:|")
        print(f"| batch 1, median | {lat['batch1_median_ms']:.1f} ms |")
        print(f"| batch 1, 90th percentile | {lat['batch1_p90_ms']:.1f} ms |")
        print(f"| batch 1, network only, median | {lat['batch1_network_only_median_ms']:.1f} ms |")
        print(f"| batch {lat['batch']}, throughput | {lat['images_per_s']:.1f} images/s |")
        print(f"\n1-minute load average before/after timing: {lat['load_average_1min'][0]} / {lat['load_average_1min'][1]}\n")
    if results.get("mask_stats"):
        print(f"Masks in {args.mask_stats}: lung fraction of the image, and masks by number of separate regions:\n")
        print("| class | masks | lung fraction median | 1st pct | 99th pct | masks by region count |")
        print("|---|---:|---:|---:|---:|---|")
        for r in results["mask_stats"]:
            regions = ", ".join(f"{k}: {v}" for k, v in r["regions"].items())
            print(f"| {r['class']} | {r['masks']} | {r['median']:.3f} | {r['p1']:.3f} | {r['p99']:.3f} | {regions} |")


if __name__ == "__main__":
    sys.exit(main())

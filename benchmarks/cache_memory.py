"""Peak memory of the dataset layer on a large dataset: split, cache and one pass over all batches.

    python benchmarks/cache_memory.py --n 15000 --size 256

Builds N synthetic 256x256 grayscale PNGs in a temporary Radiography-Database layout (three classes), then
measures in this process: `data split` (hashing + near-duplicate grouping), decoding into the memory-mapped
cache, and reading every training image once in batches of 32, as an epoch does. Prints the peak resident set
(ru_maxrss) and the peak anonymous memory (RssAnon: what the process really owns; file-backed cache pages are
reclaimable by the kernel).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()

    from lungxray.data.api import load_split, split_dataset
    from lungxray.inference import load_batch

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        classes = ["COVID", "Normal", "Viral Pneumonia"]
        t0 = time.perf_counter()
        yy, xx = np.mgrid[0 : args.size, 0 : args.size] / args.size
        for i in range(args.n):
            cls = classes[i % 3]
            folder = root / cls / "images"
            folder.mkdir(parents=True, exist_ok=True)
            a, b, c = rng.uniform(0.5, 6, 3)
            img = 0.5 + 0.25 * np.sin(a * xx * 6.28 + b) * np.cos(c * yy * 6.28) + rng.normal(0, 0.02, xx.shape)
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{cls}-{i}.png", compress_level=1)
        print(f"wrote {args.n} synthetic {args.size}x{args.size} PNGs in {time.perf_counter() - t0:.0f} s")
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        split_dataset(root, Path(tmp) / "split.csv", size=(args.size, args.size), cache_dir=cache, progress=False)
        print(f"split (decode + hash + group + cache): {time.perf_counter() - t0:.0f} s, RssAnon now {rss_anon_mib():.0f} MiB")
        data = load_split(root, Path(tmp) / "split.csv", size=(args.size, args.size), cache_dir=cache, progress=False)
        idx = data.indices("train")
        t0 = time.perf_counter()
        peak_anon = 0.0
        for start in range(0, len(idx), 32):
            x = load_batch(data, idx[start : start + 32], "none")
            peak_anon = max(peak_anon, rss_anon_mib())
        dt = time.perf_counter() - t0
        cache_mb = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
        print(f"one pass over {len(idx)} training images in batches of 32: {dt:.1f} s ({len(idx) / dt:.0f} images/s from the cache)")
        print(f"cache on disk: {cache_mb:.0f} MiB")
        print(f"peak RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
              f"peak anonymous memory during the pass: {peak_anon:.0f} MiB")


if __name__ == "__main__":
    main()

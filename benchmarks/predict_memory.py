"""Peak memory of batch prediction as the folder grows: it should stay flat (images are streamed).

    python benchmarks/predict_memory.py                      # N = 200 and 2000, no overlays, 0 workers
    python benchmarks/predict_memory.py --sizes 200 2000 --workers 2 --overlays

Fills a temporary folder with N hard links to the bundled sample's 30 images (distinct files for
`discover_inputs`, no extra disk), then runs `predict_to_folder` with an untrained, seeded 32 px CNN in a
fresh child process per N and prints its RSS before predicting, its peak RSS (`ru_maxrss`), and the
growth per 1,000 images. What may grow at all is the list of small per-image result rows kept for
predictions.json (about a kilobyte each); decoded images, batches and overlays never accumulate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(folder: str, model: str, out: str, workers: int, overlays: bool, batch_size: int) -> None:
    """Runs in its own process so peak RSS belongs to this N alone; prints one JSON line."""
    from lungxray.predict import Predictor, predict_to_folder

    pred = Predictor.load(model)
    before = _rss_mib()
    t = time.perf_counter()
    res = predict_to_folder([folder], out, predictor=pred, overlays=overlays, workers=workers, batch_size=batch_size)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"n": len(res.rows), "seconds": seconds, "rss_before_mib": before, "peak_mib": peak}))


def fill(folder: Path, n: int) -> None:
    images = sorted(p for p in SAMPLE.glob("*/images/*") if p.is_file())
    folder.mkdir(parents=True)
    for i in range(n):
        src = images[i % len(images)]
        dst = folder / f"{i:06d}{src.suffix}"
        try:
            os.link(src, dst)
        except OSError:  # another file system: copy instead
            shutil.copy(src, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--overlays", action="store_true", help="Also render one overlay PNG per image (slow).")
    ap.add_argument("--child", nargs=3, metavar=("FOLDER", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, workers=args.workers, overlays=args.overlays, batch_size=args.batch_size)
        return

    import torch

    from lungxray.checkpoint import save_checkpoint
    from lungxray.models import create_model

    with tempfile.TemporaryDirectory(prefix="lungxray-predict-memory-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = save_checkpoint(tmp / "cnn", create_model("cnn", input_size=32), {"masks": "none"})
        print(f"predict_to_folder, untrained cnn at 32 px, batch {args.batch_size}, workers {args.workers}, "
              f"overlays {'on' if args.overlays else 'off'}; each N in a fresh process")
        print(f"{'N':>7} {'seconds':>8} {'img/s':>7} {'RSS before':>11} {'peak RSS':>9} {'peak - before':>14}")
        results = []
        for n in args.sizes:
            folder = tmp / f"in-{n}"
            fill(folder, n)
            cmd = [sys.executable, __file__, "--workers", str(args.workers), "--batch-size", str(args.batch_size),
                   *(["--overlays"] if args.overlays else []), "--child", str(folder), str(model), str(tmp / f"out-{n}")]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(line)
            results.append(r)
            print(f"{r['n']:>7} {r['seconds']:>8.1f} {r['n'] / r['seconds']:>7.0f} {r['rss_before_mib']:>8.0f} MiB "
                  f"{r['peak_mib']:>5.0f} MiB {r['peak_mib'] - r['rss_before_mib']:>10.1f} MiB")
        if len(results) >= 2:
            a, b = results[0], results[-1]
            per_k = ((b["peak_mib"] - b["rss_before_mib"]) - (a["peak_mib"] - a["rss_before_mib"])) / (b["n"] - a["n"]) * 1000
            print(f"growth of (peak - before) from N={a['n']} to N={b['n']}: {per_k:.2f} MiB per 1,000 images")


if __name__ == "__main__":
    main()

"""End-to-end prediction speed against the networks it runs, and cold start against importing torch: issue 14's
two ratios, measured in one run on one machine.

    python benchmarks/pipeline.py                      # shipped default, torch runtime, bundled sample x 5
    python benchmarks/pipeline.py --runtime onnx --copies 10

1. Networks alone at batch 32 in the chosen runtime: the lung U-Net on model-size images and the classifier on
   model inputs, images/s of the pair (each image passes through both).
2. `predict_to_folder(..., overlays=False)` (what `lungxray predict FOLDER --no-overlay` runs), steady state:
   the model and the U-Net are loaded and warmed up first, so start-up is excluded; images/s.
3. Cold start: `lungxray predict ONE.png --no-overlay` as a new process, against
   `python -c "import torch, onnxruntime"`; medians of --repeats runs each.
Prints ratio 2/1 (target >= 0.80) and ratio 3 (target <= 1.3), then what overlays and Grad-CAM add. Other work on the machine shows in every
figure: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "radiography-sample"


def networks_rate(pred, images: list[np.ndarray], batch: int, reps: int) -> float:
    """Images/s of U-Net + classifier on ready arrays, batch `batch`, median of `reps` timed passes."""
    from lungxray.preprocess import lung_view

    seg = pred.segmenter()
    u8 = [pred._model_input(im) for im in images[:batch]]
    while len(u8) < batch:
        u8 += u8[: batch - len(u8)]
    floats = [u.astype(np.float32) / 255.0 for u in u8]
    x = torch.from_numpy(np.stack(u8)).float().div_(255.0).unsqueeze(1)
    masks = torch.from_numpy(np.stack(seg.predict(floats)).astype(np.float32)).unsqueeze(1)
    x = lung_view(x, masks, pred.lung_view)
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        seg.predict(floats)
        pred._forward(x)
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times[1:])


def pipeline_rate(files: list[Path], runtime: str, workers: int, overlays: bool = False, cam: bool = False) -> float:
    from lungxray.predict import Predictor, predict_to_folder

    pred = Predictor.load(runtime=runtime, cam=cam)
    with tempfile.TemporaryDirectory() as tmp:
        predict_to_folder(files[:32], Path(tmp) / "warm", overlays=overlays, progress=False, predictor=pred,
                          batch_size=32, workers=workers)
        t = time.perf_counter()
        predict_to_folder(files, Path(tmp) / "run", overlays=overlays, progress=False, predictor=pred, workers=workers,
                          batch_size=32)
        return len(files) / (time.perf_counter() - t)


def median_seconds(cmd: list[str], repeats: int, cwd: Path) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", default="torch", choices=["torch", "onnx"])
    ap.add_argument("--copies", type=int, default=5, help="copies of the 30 sample images to predict (default 5)")
    ap.add_argument("--workers", type=int, default=2, help="reader threads for predict (as the CLI's --workers)")
    ap.add_argument("--repeats", type=int, default=3, help="cold-start runs of each command")
    args = ap.parse_args()

    from lungxray.data.io import read_image
    from lungxray.predict import Predictor

    sample = sorted(SAMPLE.glob("*/images/*.png"))
    print(f"machine: {os.cpu_count()} CPU(s), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f} at start; runtime {args.runtime}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "inputs"
        folder.mkdir()
        files = []
        for c in range(args.copies):  # distinct files (content identical): no reader cache in the way
            for p in sample:
                dst = folder / f"{c}-{p.parent.parent.name.replace(' ', '_')}-{p.name.replace(' ', '_')}"
                shutil.copyfile(p, dst)
                files.append(dst)
        pred = Predictor.load(runtime=args.runtime)
        nets = networks_rate(pred, [read_image(p) for p in sample], batch=32, reps=5)
        e2e = pipeline_rate(files, args.runtime, args.workers)
        print(f"networks alone (lung U-Net + {pred.model.name}, batch 32): {nets:.1f} images/s")
        print(f"predict_to_folder, no overlays, {len(files)} images, steady state: {e2e:.1f} images/s")
        print(f"  ratio end-to-end / networks: {e2e / nets:.2f} (target >= 0.80)")

        one = sample[0]
        cold = median_seconds([sys.executable, "-m", "lungxray", "predict", str(one), "--no-overlay", "--out",
                               str(Path(tmp) / "cold"), "--overwrite", "--runtime", args.runtime],
                              args.repeats, Path(tmp))
        imports = median_seconds([sys.executable, "-c", "import torch, onnxruntime"], args.repeats, Path(tmp))
        print(f"cold `lungxray predict ONE.png --no-overlay`: {cold:.2f} s (median of {args.repeats}); "
              f"`python -c \"import torch, onnxruntime\"`: {imports:.2f} s")
        print(f"  ratio cold start / imports: {cold / imports:.2f} (target <= 1.3)")
        some = files[:60]
        with_overlays = pipeline_rate(some, args.runtime, args.workers, overlays=True)
        with_cam = pipeline_rate(some, args.runtime, args.workers, overlays=True, cam=True)
        print(f"what the extras cost, {len(some)} images, steady state: overlays {with_overlays:.1f} images/s "
              f"({e2e / with_overlays:.1f}x the time of no overlays), overlays + Grad-CAM {with_cam:.1f} images/s "
              f"({e2e / with_cam:.1f}x)")
        print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Classifier speed and memory, printed in one run (figures for docs/RESULTS.md).

    python benchmarks/classifier.py --run src/lungxray/weights/classifier --data ../shared/data/covid19-radiography

Prints: fp32 matmul GFLOP/s (for scale), FLOPs per image, training images/s, inference images/s at batch 1 and
32 for PyTorch eager and ONNX Runtime, median / p95 single-image latency, and peak RSS of one training epoch
on the full data (measured in a child process). Medians of repeated runs; all in one process, one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def flops_per_image(model, size) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 1, *size))
    return float(counter.get_total_flops())


def timed(fn, reps: int) -> list[float]:
    fn()
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="src/lungxray/weights/classifier", help="run folder or weights stem")
    ap.add_argument("--data", default=None, help="dataset for the training-memory measurement (skipped if absent)")
    ap.add_argument("--reps", type=int, default=200, help="single-image latency repetitions")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lungxray.checkpoint import load_checkpoint
    from lungxray.export import OnnxClassifier, export_onnx
    from lungxray.train import l2_penalty  # noqa: F401  (import cost outside the timings)

    run = Path(args.run)
    model, meta = load_checkpoint(run if run.is_dir() else run.with_suffix(".safetensors"))
    size = tuple(meta["image_size"])
    print(f"model {meta['model']} at {size[0]}x{size[1]}, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"torch {torch.__version__}, {args.threads} threads")
    print(f"fp32 matmul (1024^3): {matmul_gflops():.1f} GFLOP/s")
    print(f"FLOPs per image (forward): {flops_per_image(model, size) / 1e9:.3f} GFLOP")

    # Training throughput: forward + backward + AdamW step on random data, bf16 autocast as in training.
    train_model, _ = load_checkpoint(run if run.is_dir() else run.with_suffix(".safetensors"))
    train_model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(train_model.parameters(), lr=1e-4)
    xb = torch.rand(32, 1, *size).to(memory_format=torch.channels_last)
    yb = torch.randint(0, len(meta["classes"]), (32,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(meta.get("config", {}).get("amp", False))):
            loss = torch.nn.functional.cross_entropy(train_model(xb).float(), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t = statistics.median(timed(step, 8))
    print(f"training: {32 / t:.1f} images/s (batch 32)")

    model.eval()
    cl = model.to(memory_format=torch.channels_last)
    x1 = torch.rand(1, 1, *size)
    x32 = torch.rand(32, 1, *size)
    with torch.inference_mode():
        lat = timed(lambda: cl(x1), args.reps)
        b32 = statistics.median(timed(lambda: cl(x32), 10))
    print(f"torch eager fp32: batch 1 median {statistics.median(lat) * 1e3:.2f} ms, p95 {np.percentile(lat, 95) * 1e3:.2f} ms "
          f"({1 / statistics.median(lat):.0f} images/s); batch 32 {32 / b32:.0f} images/s")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(run if run.is_dir() else run.with_suffix(".safetensors"), Path(tmp) / "m.onnx")
        sess = OnnxClassifier(onnx_path, threads=args.threads)
        n1, n32 = x1.numpy(), x32.numpy()
        lat_o = timed(lambda: sess.probabilities(n1), args.reps)
        b32_o = statistics.median(timed(lambda: sess.probabilities(n32), 10))
        diff = float(np.abs(sess.probabilities(n32) - torch.softmax(cl(x32) / meta.get("temperature", 1.0), 1).detach().numpy()).max())
    print(f"onnxruntime: batch 1 median {statistics.median(lat_o) * 1e3:.2f} ms, p95 {np.percentile(lat_o, 95) * 1e3:.2f} ms "
          f"({1 / statistics.median(lat_o):.0f} images/s); batch 32 {32 / b32_o:.0f} images/s; "
          f"max |p_onnx - p_torch| = {diff:.2e}")

    if args.data and Path(args.data).is_dir():
        cfg = meta.get("config", {})
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "lungxray", "train", "--data", args.data, "--model", meta["model"],
                   "--image-size", str(size[0]), "--epochs", "1", "--out", str(Path(tmp) / "run"),
                   "--set", f"amp={str(bool(cfg.get('amp', False))).lower()}", "--set", "calibrate=false"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"one training epoch on {args.data}: {wall:.0f} s wall, peak RSS {rss:.0f} MiB")
    else:
        print("training memory: skipped (no --data)")


if __name__ == "__main__":
    main()

"""What the lung view costs per training batch, and what the 8-bit dilation saves.

    python benchmarks/lung_view.py --batch 32 --repeats 30

For a batch of synthetic lung-shaped masks, prints the median time of: the mask dilation as it was until session
15 (two float `F.max_pool2d` passes) and as it is (`preprocess.dilate_mask`: 8-bit shifted maxima), their ratio
measured in this run, and the whole `lung_view` (grow, crop, mask). Cases: the quick recipe before read_size (96-px
read, 4 px), the quick recipe with read_size (224-px read, 9 px, cropped to 96) and the shipped default (224 px, 4 px).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lungxray.preprocess import LungView, dilate_mask, lung_view


def max_filter(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """The dilation before session 15, kept here as the reference to time against."""
    k = 2 * pixels + 1
    rows = F.max_pool2d(mask, (1, k), stride=1, padding=(0, pixels))
    return F.max_pool2d(rows, (k, 1), stride=1, padding=(pixels, 0))


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def lungs(batch: int, size: int) -> torch.Tensor:
    """Two ellipses per image, like a lung mask, at slightly different places."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.zeros(batch, 1, size, size, dtype=torch.bool)
    for i in range(batch):
        cy, dx = size * (0.5 + 0.02 * (i % 5)), size * 0.2
        for cx in (size / 2 - dx, size / 2 + dx):
            out[i, 0] |= ((yy - cy) / (size * 0.3)) ** 2 + ((xx - cx) / (size * 0.13)) ** 2 <= 1
    return out.float()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, median of {args.repeats}")
    print(f"{'case':<34} {'max_pool ms':>11} {'8-bit ms':>9} {'ratio':>6} {'lung_view ms':>13}")
    cases = (("quick, 96-px read, 4 px", 96, LungView(crop=True, dilate=4)),
             ("quick, 224-px read, 9 px, to 96", 224, LungView(crop=True, dilate=9, read_size=224, out_size=96)),
             ("default, 224 px, 4 px", 224, LungView(crop=True, dilate=4)))
    for name, size, view in cases:
        m = lungs(args.batch, size)
        x = torch.rand(args.batch, 1, size, size, generator=torch.Generator().manual_seed(0))
        assert torch.equal(max_filter(m, view.dilate), dilate_mask(m, view.dilate))
        old = median_ms(lambda: max_filter(m, view.dilate), args.repeats)
        new = median_ms(lambda: dilate_mask(m, view.dilate), args.repeats)
        whole = median_ms(lambda: lung_view(x, m, view), args.repeats)
        print(f"{name:<34} {old:>11.1f} {new:>9.1f} {old / new:>5.1f}x {whole:>13.1f}")


if __name__ == "__main__":
    main()

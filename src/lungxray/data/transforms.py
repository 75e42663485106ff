"""Batched transforms on tensors. Image and mask of a sample always share one random draw."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine_params(
    n: int,
    generator: torch.Generator,
    rotate: float = 10.0,
    shift: float = 0.1,
    zoom: float = 0.1,
    shear: float = 0.1,
    hflip: bool = False,
) -> torch.Tensor:
    """Draw `n` affine matrices (N, 2, 3) in the normalised coordinates of `F.affine_grid`.

    Args:
        rotate: max rotation in degrees; shift: max translation as a fraction of the side;
        zoom: max relative scale change; shear: max shear factor; hflip: random horizontal flips
        (off by default: the heart is on the left, and flipped chest films do not occur in practice).
    """

    def uniform() -> torch.Tensor:
        return torch.rand(n, generator=generator) * 2 - 1

    angle = uniform() * math.radians(rotate)
    scale = 1 + uniform() * zoom
    sh = uniform() * shear
    tx, ty = uniform() * 2 * shift, uniform() * 2 * shift
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if hflip else torch.ones(n)
    return affine_matrices(angle, scale, sh, tx, ty, flip)


def affine_matrices(angle: torch.Tensor, scale: torch.Tensor, shear: torch.Tensor, tx: torch.Tensor,
                    ty: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) matrices for `F.affine_grid` from per-image rotation (radians), scale (> 1 enlarges), shear,
    translation (in affine_grid's normalised coordinates, where the side spans 2) and flip (-1 mirrors)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates, so dividing by the scale zooms in for scale > 1.
    a = (cos / scale) * flip
    b = (-sin + shear * cos) / scale
    c = (sin / scale) * flip
    d = (cos + shear * sin) / scale
    return torch.stack([torch.stack([a, b, tx], -1), torch.stack([c, d, ty], -1)], 1)


def apply_affine(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear",
                 size: tuple[int, int] | None = None) -> torch.Tensor:
    """Warp (N, C, H, W) by per-sample matrices; outside pixels become 0 (black, like a masked background).

    The matrices may live on the CPU (they are drawn there, from the epoch's generator) while `x` is on a GPU: the
    warp runs where `x` is. `size` (h, w) samples the output at another size (default: the input's).
    """
    shape = list(x.shape) if size is None else [x.shape[0], x.shape[1], int(size[0]), int(size[1])]
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), shape, align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def random_affine(x: torch.Tensor, generator: torch.Generator, **kwargs) -> torch.Tensor:
    """Randomly warp a batch of images (see `random_affine_params` for the arguments)."""
    return apply_affine(x, random_affine_params(x.shape[0], generator, **kwargs))


def random_affined(batch: dict[str, torch.Tensor], keys: tuple[str, ...], generator: torch.Generator, **kwargs) -> dict:
    """Dict version: warp `batch[k]` for every k in `keys` with the same matrices (image and mask stay aligned).

    Keys named "mask" (or ending in "mask") use nearest-neighbour sampling so they stay binary.
    """
    n = batch[keys[0]].shape[0]
    theta = random_affine_params(n, generator, **kwargs)
    out = dict(batch)
    for k in keys:
        out[k] = apply_affine(batch[k], theta, mode="nearest" if k.endswith("mask") else "bilinear")
    return out


def random_intensity(x: torch.Tensor, generator: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Random gamma, contrast and brightness per image, for [0, 1] inputs; black (masked) pixels stay black.

    Exposure and processing differ between hospitals far more than anatomy does; varying them stops a
    model from keying on a source's typical brightness. The draws come from `generator` (a CPU one) whatever the
    device of `x`, so a batch augmented on a GPU gets the same draws as on the CPU.
    """
    n = x.shape[0]
    shape = (n,) + (1,) * (x.ndim - 1)

    def uniform() -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1).view(shape).to(x.device)

    gamma = torch.exp(uniform() * strength)
    contrast = 1 + uniform() * strength
    brightness = uniform() * strength * 0.5
    y = x.clamp(0, 1).pow(gamma)
    y = ((y - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
    return torch.where(x > 0, y, x)


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (N, C, H, W) batch to size x size with antialiasing (for progressive resizing)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def mixup(x: torch.Tensor, generator: torch.Generator, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blend the batch with a shuffled copy of itself (mixup, Zhang et al., ICLR 2018).

    The weight is drawn from Beta(alpha, alpha) through `generator` (so a resumed epoch replays it) and folded
    into [0.5, 1], so each blend is mostly its own image. Returns the blend, the partner of each image
    (indices into the batch) and the weight: the loss is weight * loss(labels) + (1 - weight) * loss(labels[partner]).
    """
    from scipy.special import betaincinv

    u = float(torch.rand((), generator=generator))
    lam = float(betaincinv(alpha, alpha, u))
    lam = max(lam, 1.0 - lam)
    partner = torch.randperm(len(x), generator=generator)
    return lam * x + (1.0 - lam) * x[partner], partner, lam

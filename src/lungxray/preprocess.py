"""The model-input contract's lung step: what a lung-only model sees, given an image and its lung mask.

Training (`inference.load_batch`), evaluation, the audit and prediction (`Predictor`) all call `lung_view`, so a
change here lands everywhere. Images arrive as the cache stores them (uint8, divided by 255) at `read_size(meta)`:
the model's input size, unless the view reads them larger (`LungView.read_size`), so that the crop resamples a
larger image once instead of resampling again an image already shrunk to the input size. Masks arrive at the same size; the view's output is at the
model's input size.

`LungView` is stored in checkpoint metadata (`lung_view`); a model without it was trained on whatever its
`masks` key says, with a hard mask and no crop (the behaviour before this module existed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data.transforms import apply_affine
from .errors import ConfigError


@dataclass(frozen=True)
class LungView:
    """How a lung mask is applied.

    Attributes:
        crop: resample the lungs' bounding box (a square around it, plus `margin`) to the full input size,
            so the lungs fill the frame whatever the patient's size and the film's framing.
        margin: fraction of the box side added on each side before cropping.
        dilate: grow the mask by this many pixels (at the size the image is read at) before applying it, so
            the lung border the segmenter may clip stays visible.
        read_size: with crop, read the image and its mask at this side (px) and resample the lungs' box from
            there to the model's input size; 0 = read at the input size. Stored in checkpoint metadata.
        out_size: the model's input side (px), the output size of the crop; set from the checkpoint or the
            config that builds the view, not stored (the metadata's image_size says it). 0 = the input's size.
    """

    crop: bool = False
    margin: float = 0.05
    dilate: int = 0
    read_size: int = 0
    out_size: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.crop, bool):
            raise ConfigError(f"lung_view.crop must be true or false, got {self.crop!r}")
        if not (0 <= float(self.margin) <= 0.5):
            raise ConfigError(f"lung_view.margin must be between 0 and 0.5, got {self.margin!r}")
        if not (isinstance(self.dilate, int) and 0 <= self.dilate <= 32):
            raise ConfigError(f"lung_view.dilate must be an integer from 0 to 32, got {self.dilate!r}")
        for name in ("read_size", "out_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and (v == 0 or 16 <= v <= 4096)):
                raise ConfigError(f"lung_view.{name} must be 0 or a whole number of pixels from 16 to 4096, got {v!r}")
        if self.read_size and not self.crop:
            raise ConfigError("lung_view.read_size needs crop: only the lung crop resamples to the model's input size")
        if self.read_size and self.out_size and self.read_size < self.out_size:
            raise ConfigError(f"lung_view.read_size ({self.read_size}) must be at least the model's input size "
                              f"({self.out_size}): a smaller read only loses detail")

    def to_dict(self) -> dict:
        """The stored form: `read_size` only when set, so views from before it existed compare equal."""
        d = {"crop": self.crop, "margin": self.margin, "dilate": self.dilate}
        if self.read_size:
            d["read_size"] = self.read_size
        return d

    def image_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) images and masks are read at, for a model whose input is `input_size`."""
        return (self.read_size, self.read_size) if self.read_size else (int(input_size[0]), int(input_size[1]))

    @classmethod
    def from_meta(cls, meta: dict | None) -> "LungView":
        """The view stored in checkpoint metadata (a hard mask without crop when absent), with the model's
        input size from the metadata's `image_size`."""
        raw = (meta or {}).get("lung_view") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"checkpoint metadata: lung_view must be an object, got {type(raw).__name__}")
        unknown = set(raw) - {"crop", "margin", "dilate", "read_size"}
        if unknown:
            raise ConfigError(f"checkpoint metadata: unknown lung_view field(s) {sorted(unknown)}")
        size = (meta or {}).get("image_size")
        out = 0
        if raw.get("read_size"):
            if not (isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]):
                raise ConfigError(f"checkpoint metadata: lung_view.read_size needs a square image_size, got {size!r}")
            out = int(size[0])
        return cls(**raw, out_size=out)


def read_size(meta: dict) -> tuple[int, int]:
    """(H, W) a checkpoint's images are read (and cached) at: its `image_size`, unless its lung view reads larger.

    Every place that loads images for a trained model asks this, so the model sees what it was trained on."""
    size = tuple(int(v) for v in meta["image_size"])
    return LungView.from_meta(meta).image_size(size) if meta.get("masks", "none") != "none" else size


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation of (B, C, H, W) masks by a square of half-width `pixels`: {0, 1} in the mask's dtype, any
    value above 0 counting as lung."""
    if pixels <= 0:
        return mask
    # A square max filter is separable, and each 1-D pass is a few shifted maxima of 8-bit data (a window of k
    # in log2(k) + 1 steps). F.max_pool2d in float, used before, took 35 ms of a 32-image batch at 224 px and 9 px
    # of growth, a fifth of a quick-recipe training step; this takes 1.5 ms (benchmarks/lung_view.py).
    k = 2 * pixels + 1
    h, w = mask.shape[-2:]
    x = F.pad((mask > 0).to(torch.uint8), (pixels, 0, pixels, 0))  # the window [i - p, i + p] as [i, i + k) here
    x = _forward_max(_forward_max(x, k, dim=3)[..., :w], k, dim=2)[..., :h, :]
    return x.to(mask.dtype)


def _forward_max(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """out[i] = max(x[i : i + k]) along `dim`, zero past the end."""
    n = x.shape[dim]

    def ahead(t: torch.Tensor, s: int) -> torch.Tensor:  # t shifted back by s, zero-filled at the end
        if s >= n:
            return torch.zeros_like(t)
        return torch.cat([t.narrow(dim, s, n - s), torch.zeros_like(t.narrow(dim, 0, s))], dim=dim)

    span = 1  # out covers [i, i + span)
    while span * 2 <= k:
        x = torch.maximum(x, ahead(x, span))
        span *= 2
    return torch.maximum(x, ahead(x, k - span)) if span < k else x


def lung_box_theta(mask: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, 2, 3) affine matrices (in `F.affine_grid` coordinates) that map the full frame onto a square box
    around each mask's lungs, grown by `margin`; the identity where a mask is empty."""
    b, _, h, w = mask.shape
    theta = torch.zeros(b, 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # The box is found on the CPU (one copy of two small tensors when the masks are on a GPU, instead of a
    # synchronising lookup per image); the matrices stay there and `apply_affine` moves them to the images.
    rows = (mask.amax(dim=3)[:, 0] > 0).cpu()  # (B, H)
    cols = (mask.amax(dim=2)[:, 0] > 0).cpu()  # (B, W)
    for i in range(b):
        ys, xs = torch.nonzero(rows[i]).flatten(), torch.nonzero(cols[i]).flatten()
        if len(ys) == 0 or len(xs) == 0:
            continue
        # Box in normalised coordinates [-1, 1] (pixel centres, align_corners=False).
        y0, y1 = (2 * ys[0].item()) / h - 1, (2 * (ys[-1].item() + 1)) / h - 1
        x0, x1 = (2 * xs[0].item()) / w - 1, (2 * (xs[-1].item() + 1)) / w - 1
        side = max(y1 - y0, x1 - x0) * (1 + 2 * margin) / 2  # half side of the square box
        theta[i, 0, 0] = theta[i, 1, 1] = side
        theta[i, 0, 2], theta[i, 1, 2] = (x0 + x1) / 2, (y0 + y1) / 2
    return theta


def lung_view(x: torch.Tensor, mask: torch.Tensor, view: LungView, mode: str = "keep",
              return_theta: bool = False):
    """Apply a lung mask to a batch as a lung-only model sees it.

    Args:
        x: (B, 1, H, W) float images in [0, 1], at the size the view reads them (`LungView.image_size`).
        mask: (B, 1, H, W) {0, 1} lung masks at the same size.
        view: crop / margin / dilation.
        mode: "keep" keeps the lungs (the model's input); "remove" blacks them out and keeps the rest, and
            "flat" keeps the lungs' outline and mean brightness but replaces their texture by that mean
            (both used by the shortcut audit).
    Returns:
        (B, 1, h, w) float tensor at the model's input size (`view.out_size` where set, else H, W); with `return_theta`, also the (B, 2, 3) crop matrices (None without crop),
        which `uncrop` uses to bring maps of the model's input (Grad-CAM) back onto the image.
    """
    if mode not in ("keep", "remove", "flat"):
        raise ValueError(f"mode must be keep, remove or flat, got {mode!r}")
    m = dilate_mask(mask.float(), view.dilate)
    theta = None
    if view.crop:
        theta = lung_box_theta(m, view.margin)
        # The crop's output is the model's input size, which is smaller than the image when it is read larger.
        size = (view.out_size, view.out_size) if view.out_size else None
        x = apply_affine(x, theta, size=size)
        m = apply_affine(m, theta, mode="nearest", size=size)
    elif view.out_size and tuple(x.shape[-2:]) != (view.out_size, view.out_size):
        raise ValueError(f"lung_view: images of {tuple(x.shape[-2:])} without a crop, for a {view.out_size}-px model input")
    if mode == "remove":
        out = x * (1.0 - m)
    elif mode == "flat":
        area = m.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        out = (x * m).sum(dim=(2, 3), keepdim=True) / area * m
    else:
        out = x * m
    return (out, theta) if return_theta else out


def uncrop(maps: torch.Tensor, theta: torch.Tensor | None) -> torch.Tensor:
    """Bring (B, C, H, W) maps in the cropped input's frame back to the image's frame (zero outside the box)."""
    if theta is None:
        return maps
    s = theta[:, 0, 0].clamp_min(1e-6)
    inverse = torch.zeros_like(theta)
    inverse[:, 0, 0] = inverse[:, 1, 1] = 1.0 / s
    inverse[:, 0, 2], inverse[:, 1, 2] = -theta[:, 0, 2] / s, -theta[:, 1, 2] / s
    return apply_affine(maps, inverse.to(maps.dtype))

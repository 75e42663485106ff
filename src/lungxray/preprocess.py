"""The model-input contract's lung step: what a lung-only model sees, given an image and its lung mask.

Training (`inference.load_batch`), evaluation, the audit and prediction (`Predictor`) all call `lung_view`, so a
change here lands everywhere. Images arrive as the cache stores them (uint8 at the model's size, divided by 255)
and masks at the same size.

`LungView` is stored in checkpoint metadata (`lung_view`); a model without it was trained on whatever its
`masks` key says, with a hard mask and no crop (the behaviour before this module existed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
        dilate: grow the mask by this many pixels (at the model's size) before applying it, so the lung
            border the segmenter may clip stays visible.
    """

    crop: bool = False
    margin: float = 0.05
    dilate: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.crop, bool):
            raise ConfigError(f"lung_view.crop must be true or false, got {self.crop!r}")
        if not (0 <= float(self.margin) <= 0.5):
            raise ConfigError(f"lung_view.margin must be between 0 and 0.5, got {self.margin!r}")
        if not (isinstance(self.dilate, int) and 0 <= self.dilate <= 32):
            raise ConfigError(f"lung_view.dilate must be an integer from 0 to 32, got {self.dilate!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> "LungView":
        """The view stored in checkpoint metadata (a hard mask without crop when absent)."""
        raw = (meta or {}).get("lung_view") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"checkpoint metadata: lung_view must be an object, got {type(raw).__name__}")
        unknown = set(raw) - {"crop", "margin", "dilate"}
        if unknown:
            raise ConfigError(f"checkpoint metadata: unknown lung_view field(s) {sorted(unknown)}")
        return cls(**raw)


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation of (B, 1, H, W) {0, 1} masks by a square of half-width `pixels`."""
    if pixels <= 0:
        return mask
    # A square max filter is separable: two 1-D passes cost 2k instead of k^2 comparisons per pixel.
    k = 2 * pixels + 1
    rows = F.max_pool2d(mask, (1, k), stride=1, padding=(0, pixels))
    return F.max_pool2d(rows, (k, 1), stride=1, padding=(pixels, 0))


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
        x: (B, 1, H, W) float images in [0, 1].
        mask: (B, 1, H, W) {0, 1} lung masks at the same size.
        view: crop / margin / dilation.
        mode: "keep" keeps the lungs (the model's input); "remove" blacks them out and keeps the rest, and
            "flat" keeps the lungs' outline and mean brightness but replaces their texture by that mean
            (both used by the shortcut audit).
    Returns:
        (B, 1, H, W) float tensor; with `return_theta`, also the (B, 2, 3) crop matrices (None without crop),
        which `uncrop` uses to bring maps of the model's input (Grad-CAM) back onto the image.
    """
    if mode not in ("keep", "remove", "flat"):
        raise ValueError(f"mode must be keep, remove or flat, got {mode!r}")
    m = dilate_mask(mask.float(), view.dilate)
    theta = None
    if view.crop:
        theta = lung_box_theta(m, view.margin)
        x = apply_affine(x, theta)
        m = apply_affine(m, theta, mode="nearest")
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

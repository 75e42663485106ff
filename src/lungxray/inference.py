"""Batched inference on cached arrays, shared by training (validation), evaluation and the audit."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from .data.api import SplitData
from .errors import ConfigError
from .preprocess import LungView, lung_view


def check_masks(data: SplitData, idx: np.ndarray, masks: str) -> None:
    """Masked training needs a mask for every image used; never let 'has a mask' leak the label."""
    if masks == "none":
        return
    missing = [data.rows[i] for i in idx if data.prepared.mask_rows[i] < 0]
    if missing:
        broken = [r.mask_path for r in missing if r.mask_path]
        unreadable = (f" {len(broken)} of them have a mask file that cannot be read (first: {broken[0]}): replace or "
                      "remove it (`lungxray data fill-masks` writes masks only where there is no file)." if broken else "")
        raise ConfigError(
            f"masks=provided, but {len(missing)} of {len(idx)} images have no usable mask (first: {missing[0].path})."
            f"{unreadable} Masking only the images that have masks would let the mask itself reveal the class. "
            "Use masks=predicted (every image gets the lung U-Net's mask), or give a dataset where every image has a mask."
        )


def load_batch(data: SplitData, idx: np.ndarray, masks: str, mask_mode: str = "keep",
               view: LungView | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """(B, 1, H, W) float images in [0, 1] for dataset rows `idx`, lung-masked unless `masks == "none"`.

    The mask is applied by `preprocess.lung_view` with `view` (default: a hard mask, no crop); `mask_mode`
    "keep" keeps the lungs, "remove" blacks them out, "flat" removes their texture (the shortcut audit).
    With `device`, the stored uint8 rows are moved there first and the lung view is computed there (training on a
    GPU: the CPU only reads the cache).
    """
    prep = data.prepared
    x = torch.from_numpy(np.asarray(prep.images[prep.image_rows[idx]])).to(device).float().div_(255.0).unsqueeze(1)
    if masks == "none":
        return x
    m = torch.from_numpy(np.asarray(prep.masks[prep.mask_rows[idx]])).to(device).float().unsqueeze(1)
    return lung_view(x, m, view or LungView(), mode=mask_mode)


def iter_batches(data: SplitData, idx: np.ndarray, masks: str, batch_size: int, **kw) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        yield chunk, load_batch(data, chunk, masks, **kw)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: SplitData, idx: np.ndarray, masks: str, batch_size: int = 64,
                   progress: bool = False, desc: str = "scoring", **kw) -> np.ndarray:
    """Logits (N, C) for dataset rows `idx`, in order (with `progress`, a bar counting images).

    Each batch is built on the model's device (on a GPU the lung view runs there too)."""
    from .progress import bar

    model.eval()
    device = next(model.parameters()).device
    out = []
    with bar(total=len(idx), desc=desc, unit="img", enabled=progress) as shown:
        for chunk, x in iter_batches(data, idx, masks, batch_size, device=device, **kw):
            out.append(model(x).float().cpu())
            shown.update(len(chunk))
    if not out:
        return np.zeros((0, len(getattr(model, "classes", ()))), dtype=np.float32)
    return torch.cat(out).numpy()

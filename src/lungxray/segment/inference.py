"""Lung masks for any X-ray: the one inference path used by `segment predict`, `fill-masks` and the classifiers.

Preprocessing is the training pipeline's: resize to the model size with `resize_image`, quantise to uint8
and back (as the cache stores images), normalise inside the model. The probability map is resized back to
the requested output size before thresholding, so mask edges follow the original image, not the model grid.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.io import resize_image, to_uint8
from ..errors import CheckpointError
from .model import LungUNet, load_segmenter
from .postprocess import fill_holes, keep_largest_components

WEIGHTS_NAME = "lung-unet.safetensors"


class MaskPredictor(Protocol):
    """What lungxray asks of a lung segmenter, everywhere (cache, prediction, audit, `segment predict`):
    `predict(images, size=None)` takes 2-D float images in [0, 1] (a list, or an (N, H, W) stack) and returns one
    bool mask (lung = True) per image, at `size` or at each image's own size. `Segmenter` is the shipped one."""

    def predict(self, images, size: tuple[int, int] | None = None) -> list[np.ndarray]: ...


def default_segmenter_path() -> Path:
    """The lung U-Net shipped inside the package (`lungxray/weights/lung-unet.safetensors`)."""
    return Path(str(resources.files("lungxray") / "weights" / WEIGHTS_NAME))


MASK_SETTINGS = ("architecture", "model_args", "input_size", "normalization", "threshold", "postprocess")
"""The keys of a U-Net's JSON that change the masks it draws, besides its weights."""


def segmenter_identity(path: str | Path | None = None) -> str:
    """SHA-256 of what decides a lung U-Net's masks: its weights file and the JSON settings in `MASK_SETTINGS`
    (a threshold or post-processing changed in the JSON draws other masks from the same weights). Keys the
    predicted-mask cache."""
    import hashlib
    import json

    path = Path(path) if path is not None else default_segmenter_path()
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps({k: meta.get(k) for k in MASK_SETTINGS}, sort_keys=True).encode())
    return h.hexdigest()


def _as_image(x, index: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"image {index}: expected a 2-D grayscale array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"image {index}: empty array")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"image {index}: intensities must be finite and in [0, 1] (use lungxray.data.io.read_image)")
    return arr


class Segmenter:
    """A loaded lung U-Net with its pre- and post-processing.

    Args:
        model: a LungUNet (switched to eval mode here).
        meta: its metadata (threshold and post-processing settings are read from it).
        batch_size: images per forward pass in `predict`.
        amp: run the network under bfloat16 autocast: ~2x the batch throughput on CPUs with AVX-512 BF16,
            same validation Dice to 4 decimals (docs/RESULTS.md), but slow on CPUs without bf16 units.
            Default float32.
    """

    def __init__(self, model: LungUNet, meta: dict | None = None, batch_size: int = 32, amp: bool = False):
        # Weights and inputs share the channels-last memory format, oneDNN's fastest on CPU (no reorders).
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.meta = dict(meta or {})
        self.batch_size = int(batch_size)
        self.amp = bool(amp)
        post = self.meta.get("postprocess", {})
        self.threshold = float(self.meta.get("threshold", 0.5))
        self.keep = int(post.get("keep_components", 2))
        self.min_fraction = float(post.get("min_component_fraction", 0.05))
        self.fill = bool(post.get("fill_holes", True))
        self._device = next(model.parameters()).device

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs) -> "Segmenter":
        """Load weights (`.safetensors` with its `.json`, or a `segment train` run folder); None = shipped weights.

        Raises:
            CheckpointError: missing, corrupt or mismatched weights, with what to do about it.
        """
        if path is None:
            path = default_segmenter_path()
            if not path.is_file() or not path.with_suffix(".json").is_file():
                raise CheckpointError(
                    f"the shipped lung segmentation weights are missing ({path}); reinstall lungxray, or train "
                    "your own with `lungxray segment train` and pass its run folder"
                )
        model, meta = load_segmenter(path)
        return cls(model, meta, **kwargs)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_size

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """[0, 1] image of any size -> float32 at the model size, quantised like the training cache."""
        return to_uint8(resize_image(image, self.input_size)).astype(np.float32) / 255.0

    @torch.no_grad()
    def probabilities(self, batch: np.ndarray) -> torch.Tensor:
        """Lung probabilities (N, 1, h, w) at the model size for preprocessed images (N, h, w)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(self._device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        return torch.sigmoid(logits.float())

    def _finish(self, prob: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """(1, h, w) probability -> post-processed bool mask at `size`."""
        if tuple(prob.shape[-2:]) != tuple(size):
            prob = F.interpolate(prob[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        mask = (prob[0] > self.threshold).numpy()
        if self.keep > 0:
            mask = keep_largest_components(mask, self.keep, self.min_fraction)
        if self.fill:
            mask = fill_holes(mask)
        return mask

    def _run(self, images: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> Iterable[np.ndarray]:
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = np.stack([self.preprocess(img) for img in chunk])
            probs = self.probabilities(batch)
            for j in range(len(chunk)):
                yield self._finish(probs[j], sizes[start + j])

    def predict(self, images, size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """Post-processed lung masks for 2-D float images in [0, 1] of any sizes.

        Args:
            images: a list of (H, W) arrays, or one (N, H, W) array.
            size: output (H, W) for every mask; default each input's own size.
        Returns:
            list of bool arrays, lung = True.
        """
        if isinstance(images, np.ndarray) and images.ndim == 2:
            raise ValueError("predict takes a list of images or an (N, H, W) array; wrap a single image in a list")
        arrays = [_as_image(x, i) for i, x in enumerate(images)]
        sizes = [tuple(size) if size is not None else a.shape for a in arrays]
        return list(self._run(arrays, sizes))

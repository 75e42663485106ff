"""Out-of-distribution guard: does this input look like the frontal chest X-rays the model was trained on?

Three complementary tests, all cheap at inference time:

1. Input checks that need no model: a colour photograph (channels disagree), a blank or nearly uniform image.
2. Feature-space distance: the Mahalanobis distance of the model's penultimate features from the training
   set's (Ledoit-Wolf shrunk covariance). Radiographs of another kind (lateral views, other body parts,
   photos, drawings) land far from every training X-ray even when the softmax is confident, which is
   why softmax probability alone is no guard. The threshold is the 99.5th percentile of the distances of
   the validation split, so about 1 in 200 genuine in-distribution images is flagged.
3. Layout distance: the same Mahalanobis test on a 6x6 thumbnail of the model input, standardised per image
   (zero mean, unit variance, so that exposure and contrast, which vary widely between sources, do not
   hide the layout). Frontal chest X-rays share a coarse layout (dark lung fields either side of a bright
   mediastinum, shoulders at the top); a rotated or upside-down film, a negative, a close-up or a portrait
   photograph breaks it. Pooled deep features of a compact network are nearly blind to such changes (global
   average pooling discards where things are), which `benchmarks/ood.py` measures; the thumbnail test is
   cheap and model-independent. Same threshold rule (99.5th percentile of validation thumbnails). The
   size was chosen on a random held-out part of the training split, where 6x6 caught more rotated,
   upside-down and inverted images than 8x8 at a similar false-alarm rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from .errors import CheckpointError

QUANTILE = 0.995
LAYOUT_SIZE = 6
MIN_SIDE = 64
"""An image under this many pixels on its shorter side (the training films are 224 and 299 px) is flagged."""
MIN_STD = 0.03
MAX_COLOUR = 0.06


def _last_linear(model: torch.nn.Module) -> torch.nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError("model has no linear classifier layer to take features from")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features entering the last linear layer, logits) for a batch, in one forward pass."""
    grabbed: list[torch.Tensor] = []
    handle = _last_linear(model).register_forward_hook(lambda m, inp, out: grabbed.append(inp[0].detach()))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return grabbed[0].float().flatten(1), logits.float()


class FeatureGuard:
    """Mahalanobis distance to the training features, with a threshold set on validation images."""

    def __init__(self, mean: np.ndarray, precision: np.ndarray, threshold: float, layout: "FeatureGuard | None" = None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.precision = np.asarray(precision, dtype=np.float64)
        self.threshold = float(threshold)
        self.layout = layout
        """The thumbnail-layout guard fitted alongside (None for guards saved before it existed)."""

    @classmethod
    def fit(cls, train_features: np.ndarray, val_features: np.ndarray, quantile: float = QUANTILE) -> "FeatureGuard":
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf().fit(np.asarray(train_features, dtype=np.float64))
        guard = cls(lw.location_, lw.precision_, np.inf)
        guard.threshold = float(np.quantile(guard.distance(val_features), quantile))
        return guard

    def distance(self, features: np.ndarray) -> np.ndarray:
        d = np.asarray(features, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def _tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {f"{prefix}mean": torch.from_numpy(self.mean).float(),
                f"{prefix}precision": torch.from_numpy(self.precision).float(),
                f"{prefix}threshold": torch.tensor([self.threshold], dtype=torch.float64)}

    @classmethod
    def _from_tensors(cls, t: dict[str, torch.Tensor], prefix: str = "") -> "FeatureGuard":
        return cls(t[f"{prefix}mean"].double().numpy(), t[f"{prefix}precision"].double().numpy(),
                   float(t[f"{prefix}threshold"][0]))

    def save(self, path: str | Path) -> None:
        from .utils import atomic_write_bytes
        from safetensors.torch import save

        tensors = self._tensors()
        if self.layout is not None:
            tensors.update(self.layout._tensors("layout_"))
        atomic_write_bytes(path, save(tensors))

    @classmethod
    def load(cls, path: str | Path) -> "FeatureGuard":
        try:
            t = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path}: unreadable OOD statistics ({exc})") from None
        guard = cls._from_tensors(t)
        guard.layout = cls._from_tensors(t, "layout_") if "layout_mean" in t else None
        return guard


def layout_descriptor(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 36) layout descriptors: the model input (N, 1, H, W) in [0, 1], area-averaged to 6x6, standardised."""
    t = torch.as_tensor(x).float()
    if t.ndim == 3:
        t = t[:, None]
    t = torch.nn.functional.adaptive_avg_pool2d(t.cpu(), LAYOUT_SIZE).flatten(1).double()
    return ((t - t.mean(1, keepdim=True)) / (t.std(1, keepdim=True) + 1e-6)).numpy()


def input_checks(image: np.ndarray, rgb: np.ndarray | None = None) -> list[str]:
    """Model-free reasons why `image` (2-D float [0, 1]) is not a chest radiograph; empty when none.

    Args:
        image: the grayscale image as the classifier will see it (before masking).
        rgb: optional (H, W, 3) float [0, 1] original, to catch colour photographs.
    """
    reasons = []
    if min(image.shape[:2]) < MIN_SIDE:
        reasons.append(f"tiny image ({image.shape[1]}x{image.shape[0]} px, under {MIN_SIDE} px on a side): too small "
                       "to show the lungs' detail; the model's input is enlarged from it")
    if float(np.std(image)) < MIN_STD:
        reasons.append(f"nearly uniform image (intensity std {float(np.std(image)):.3f} < {MIN_STD})")
    if rgb is not None and rgb.ndim == 3 and rgb.shape[-1] >= 3:
        colour = float(np.mean(np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])) / 2)
        if colour > MAX_COLOUR:
            reasons.append(f"colour image (mean channel difference {colour:.3f} > {MAX_COLOUR}); radiographs are grayscale")
    return reasons


COLOUR_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr")
"""PIL modes that can hold colour: the images the colour check reads (from a file or a PIL image alike)."""


def read_rgb_thumbnail(path, size: int = 64) -> np.ndarray | None:
    """Small RGB version of a PNG/JPEG (a path or an open binary file) for the colour check (None for DICOM or
    unreadable files)."""
    try:
        with Image.open(path) as im:
            if im.mode not in COLOUR_MODES:
                return None
            im.draft("RGB", (size, size))
            return np.asarray(im.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
    except Exception:
        return None


def guard_path(run_or_weights: str | Path) -> Path:
    """Where a checkpoint's OOD statistics live: `<stem>.ood.safetensors` beside the weights."""
    p = Path(run_or_weights)
    if p.is_dir():
        p = p / "best.safetensors"
    return p.with_name(p.name.replace(".safetensors", "") + ".ood.safetensors")


def fit_guard_for_run(run: Path, model: torch.nn.Module, split, train_idx, val_idx, masks: str, batch_size: int = 64,
                      view=None, progress: bool = False) -> FeatureGuard:
    """Fit the guard on a run's training features, threshold on validation; saved beside best.safetensors.
    With `progress`, a bar counts the images scored."""
    from .inference import iter_batches
    from .progress import bar

    def feats(idx, which):
        deep, layout = [], []
        with bar(total=len(idx), desc=f"OOD guard ({which})", unit="img", enabled=progress) as shown:
            for chunk, x in iter_batches(split, idx, masks, batch_size, view=view):
                deep.append(penultimate_features(model, x.to(next(model.parameters()).device))[0].cpu().numpy())
                layout.append(layout_descriptor(x))
                shown.update(len(chunk))
        return np.concatenate(deep), np.concatenate(layout)

    model.eval()
    (train_f, train_l), (val_f, val_l) = feats(train_idx, "train"), feats(val_idx, "val")
    guard = FeatureGuard.fit(train_f, val_f)
    guard.layout = FeatureGuard.fit(train_l, val_l)
    guard.save(guard_path(run))
    return guard

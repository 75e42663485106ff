"""What prediction returns: the shipped model's identity and notices, input files and per-image results."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np


if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "classifier.safetensors"
"""The shipped default classifier (weights + `classifier.json` metadata). Replacing the model is a one-file change here."""
MODEL_CARD = "docs/MODEL_CARD.md"
NOTICE = "research use only, not for clinical use"
INTENDED_USE = (
    "Research and teaching on chest X-ray classification (COVID-19 / Normal / Viral Pneumonia) with the "
    "COVID-19 Radiography Database. Not a medical device: never use it for diagnosis, triage or any "
    "decision about a patient."
)
MASK_MODES = ("auto", "provided", "predicted", "none")
RUNTIMES = ("torch", "onnx")
"""Who computes the probabilities. Grad-CAM always runs on the PyTorch weights (ONNX graphs have no gradients)."""
DISPLAY_MAX_SIDE = 1024
"""Overlays never need more; keeping a smaller copy bounds memory per batch for 4k-pixel DICOMs."""
_MAX_SKIP_WARNINGS = 20


def footer_label(name: str | None, version: str | None) -> str:
    """What an overlay's footer names the model by: "lungenc 0.1.0"."""
    return f"{name or ''} {version or ''}".strip()


@dataclass(frozen=True)
class InputFile:
    """One file to predict: `path` as the user gave it (joined with a folder), `rel` its path under the inputs' common folder."""

    path: Path
    rel: Path


@dataclass
class PredictionResult:
    """What the pipeline says about one image.

    `image`, `mask` and `cam` share one shape: the input downscaled to at most `DISPLAY_MAX_SIDE`
    pixels on its longer side (the original size when smaller), ready to draw; the model itself saw
    them resized to its `image_size`.
    """

    path: str
    name: str
    prediction: str
    probability: float
    probabilities: dict[str, float]
    logits: list[float]
    image: np.ndarray
    original_shape: tuple[int, int]
    mask: np.ndarray | None = None
    mask_source: str | None = None
    """"provided" (a mask file or array given), "predicted" (segmentation model) or None (no mask applied)."""
    mask_path: str | None = None
    cam: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)
    ood: dict = field(default_factory=dict)
    """Out-of-distribution guard: {"flagged", "reasons", "distance", "threshold", "layout_distance",
    "layout_threshold"} (see lungxray.ood; distances are None where the model has no fitted guard)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (no arrays): what predictions.json holds for this image. Its "mask" names the mask's
        source ("predicted", "provided" or None), as predictions.json and the REST API do; the mask itself (an
        array) is `result.mask`."""
        return self.row()

    def overlay(self, cam: bool = False, model_label: str | None = None) -> "Image.Image":
        """The overlay `lungxray predict` writes, as a PIL image: the X-ray with the lung outline the model used,
        "Prediction: X / Probability: Y%" and a bar per class; with `cam=True` the Grad-CAM panel beside it
        (the result must come from `predict(..., cam=True)`). The footer names the model ("lungenc 0.1.0", from
        the result's provenance) unless `model_label` says otherwise ("" for none)."""
        from PIL import Image

        from ..report.overlay import render_overlay

        if cam and self.cam is None:
            raise ValueError("this result has no Grad-CAM map: predict with cam=True first")
        shown = self if cam or self.cam is None else replace(self, cam=None)
        if model_label is None:
            prov = self.provenance or {}
            model_label = footer_label(prov.get("model"), prov.get("model_version"))
        return Image.open(io.BytesIO(render_overlay(shown, list(self.probabilities), model_label)))

    def row(self) -> dict[str, Any]:
        """JSON-ready record (no arrays)."""
        return {
            "path": self.path,
            "name": self.name,
            "prediction": self.prediction,
            "probability": self.probability,
            "probabilities": dict(self.probabilities),
            "mask": self.mask_source,
            "mask_path": self.mask_path,
            "ood": self.ood,
            "provenance": self.provenance,
        }



"""The one inference pipeline: read -> preprocess -> mask -> classify -> explain.

`lungxray predict`, the REST server and Python callers all go through `Predictor`, so a fix lands
everywhere and preprocessing cannot drift from training. Training caches every image as
`to_uint8(resize_image(read_image(path), size))` and divides by 255 when it builds a batch, then
multiplies by the lung mask when the model was trained on masked images; `Predictor` does exactly
the same, in the same order, in `_model_input` and `_classify`.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .ood import FeatureGuard, _last_linear, guard_path, input_checks, layout_descriptor, read_rgb_thumbnail
from .errors import CheckpointError, ConfigError, DatasetError, ImageReadError, LungxrayError
from .data.discovery import IMAGE_DIRS, MASK_DIRS
from .data.io import read_image, read_mask, resize_image, resize_mask, to_uint8
from .preprocess import LungView, lung_view, uncrop
from .metrics import softmax
from .models import Classifier
from .utils import atomic_write_text, check_output_folder, output_lock, read_json, write_json

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "classifier.safetensors"
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
        """JSON-ready record (no arrays): what predictions.json holds for this image."""
        return self.row()

    def overlay(self, cam: bool = False, model_label: str = "") -> "Image.Image":
        """The overlay `lungxray predict` writes, as a PIL image: the X-ray with the lung outline the model used,
        "Prediction: X / Probability: Y%" and a bar per class; with `cam=True` the Grad-CAM panel beside it
        (the result must come from `predict(..., cam=True)`)."""
        from PIL import Image

        from .report.overlay import render_overlay

        if cam and self.cam is None:
            raise ValueError("this result has no Grad-CAM map: predict with cam=True first")
        shown = self if cam or self.cam is None else replace(self, cam=None)
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


@dataclass
class _Item:
    """An image between reading and classification (internal)."""

    path: str
    name: str
    model_u8: np.ndarray
    display: np.ndarray
    original_shape: tuple[int, int]
    mask_model: np.ndarray | None = None
    mask_display: np.ndarray | None = None
    mask_source: str | None = None
    mask_path: str | None = None
    wants_predicted_mask: bool = False
    ood_reasons: list = field(default_factory=list)


def _display_copy(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    scale = DISPLAY_MAX_SIDE / max(h, w)
    if scale >= 1:
        return image.astype(np.float32, copy=False)
    return resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ImageReadError(f"{name}: expected a 2-D grayscale image, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ImageReadError(f"{name}: expected floats in [0, 1], got {arr.dtype} (divide 8-bit images by 255)")
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ImageReadError(f"{name}: image is empty or has NaN/infinite pixels")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ImageReadError(f"{name}: pixel values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return np.clip(arr, 0.0, 1.0).astype(np.float32, copy=False)


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1] (1 = most important); an all-zero map stays zero.

    MONAI's default post-processing maps max -> 0 and min -> 1, which reads backwards on a heatmap.
    """
    flat = maps.detach().flatten(1)
    lo = flat.min(dim=1).values.view(-1, *[1] * (maps.ndim - 1))
    hi = flat.max(dim=1).values.view(-1, *[1] * (maps.ndim - 1))
    span = hi - lo
    return torch.where(span > 0, (maps.detach() - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))


def make_gradcam(model: Classifier, layer: str):
    """MONAI Grad-CAM on a private copy of `model` (hooks never touch the model used for prediction)."""
    from monai.visualize import GradCAM
    from monai.visualize.class_activation_maps import ModelWithHooks

    class _PerSampleScore(ModelWithHooks):
        # MONAI scores `logits[:, class_idx]`, which for a batch mixes every sample's class; we
        # back-propagate each sample's own predicted class so a whole batch is explained at once.
        def class_score(self, logits, class_idx):
            return logits.gather(1, torch.as_tensor(class_idx, device=logits.device).view(-1, 1)).squeeze(1)

    net = copy.deepcopy(model).eval()
    hooks = _PerSampleScore(net, layer, register_forward=True, register_backward=True)
    return GradCAM(hooks, layer, postprocessing=_unit_range)


class _FeatureTap:
    """(penultimate features, logits) from one forward pass, safe to call from several threads at once.

    `lungxray.ood.penultimate_features` adds a hook per call; on a model shared by threads, one thread's hook
    would also fire in another thread's forward pass. This hook is registered once and stores what it sees
    per thread. It is a plain closure, so deep copies of the model (Grad-CAM's) share it harmlessly.
    """

    def __init__(self, model: torch.nn.Module):
        local = threading.local()
        self._local = local

        def keep(module, inputs, output):
            local.features = inputs[0].detach()

        _last_linear(model).register_forward_hook(keep)

    def __call__(self, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._local.features = None
        logits = model(x)
        return self._local.features.float().flatten(1), logits.float()


class Predictor:
    """A loaded classifier plus everything needed to use it exactly as it was trained.

    Build with `Predictor.load(...)`; then `predict_array(image)` for one in-memory image or
    `predict_paths(paths)` to stream files and folders.
    """

    def __init__(
        self,
        model: Classifier,
        meta: dict,
        *,
        masks: str = "auto",
        mask_dir: str | Path | None = None,
        cam: bool | str = False,
        segmenter: Any = None,
        checkpoint: str | Path | None = None,
        runtime: str = "torch",
        onnx: Any = None,
    ):
        if masks not in MASK_MODES:
            raise ConfigError(f"--masks must be one of {', '.join(MASK_MODES)}, got {masks!r}")
        self.model = model.eval()
        self.meta = meta
        self.classes: list[str] = list(meta.get("classes", model.classes))
        self.size: tuple[int, int] = tuple(int(v) for v in meta.get("image_size", model.spec.input_size))  # type: ignore[assignment]
        self.temperature = float(meta.get("temperature", 1.0))
        self.trained_masks = str(meta.get("masks", "none"))
        self.masked = self.trained_masks != "none"
        self.lung_view = LungView.from_meta(meta)
        self.masks = masks
        self.mask_dir = Path(mask_dir) if mask_dir is not None else None
        if self.mask_dir is not None and not self.mask_dir.is_dir():
            raise ConfigError(f"--mask-dir {self.mask_dir}: no such folder")
        if not self.masked and masks in ("provided", "predicted"):
            raise ConfigError(
                f"--masks {masks}: model {model.name!r} was trained on unmasked images, so masking its input would "
                "change what it sees; use --masks auto (or none) with this model"
            )
        if self.masked and masks == "none":
            log.warning("model %s was trained on lung-masked images; --masks none feeds it unmasked images, "
                        "outside its training conditions", model.name)
        self.device = next(model.parameters()).device
        if runtime not in RUNTIMES:
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if runtime == "onnx" and onnx is None:
            raise ConfigError("runtime 'onnx' needs an ONNX session: build with Predictor.load(..., runtime='onnx')")
        self.runtime = runtime
        self._onnx = onnx if runtime == "onnx" else None
        # Features for the OOD guard come from one hook that stays on the model and writes to thread-local
        # storage, so concurrent requests (the server's worker threads) never see each other's features.
        self._features = _FeatureTap(model)
        self._segmenter = segmenter
        self._cam = None
        self._cam_lock = threading.Lock()
        if cam == "auto":  # Grad-CAM where the model has a layer registered for it, else none
            cam = bool(model.spec.cam_layer)
            if not cam:
                log.info("model %s has no Grad-CAM layer: predicting without heatmaps", model.name)
        if cam:
            layer = model.spec.cam_layer
            if not layer:
                raise ConfigError(f"--cam: model {model.name!r} has no convolutional layer registered for Grad-CAM "
                                  "(its ModelSpec.cam_layer is empty); use a convolutional model such as cnn")
            if layer not in dict(model.named_modules()):
                raise CheckpointError(f"--cam: model {model.name!r} has no layer {layer!r}")
            self._cam = make_gradcam(model, layer)
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.guard = None
        if checkpoint is not None and guard_path(checkpoint).is_file():
            self.guard = FeatureGuard.load(guard_path(checkpoint))
        self.provenance = {
            "notice": NOTICE,
            "intended_use": INTENDED_USE,
            "model_card": MODEL_CARD,
            "model": model.name,
            "model_version": meta.get("version"),
            "data_fingerprint": (meta.get("data") or {}).get("fingerprint"),
        }

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        masks: str = "auto",
        mask_dir: str | Path | None = None,
        device: str = "cpu",
        cam: bool | str = False,
        segmenter: Any = None,
        runtime: str = "torch",
        onnx_path: str | Path | None = None,
    ) -> "Predictor":
        """Load a checkpoint and wrap it.

        Args:
            model: run folder, `.safetensors` file (with its `.json`), or None for the shipped default.
            masks: auto | provided | predicted | none (see `lungxray predict --help`).
            mask_dir: extra folder to look for masks in (same relative path or file name as the image).
            device: cpu, cuda or auto.
            cam: also compute a Grad-CAM heatmap for the predicted class; "auto": when the model has a
                layer registered for it (the server's choice), else silently without.
            segmenter: an object with `predict(list_of_images) -> list_of_masks`; default: the
                `lungxray.segment` model, loaded only when a mask has to be predicted.
            runtime: "torch", or "onnx" to compute probabilities with ONNX Runtime. The PyTorch weights are
                still loaded: they are the source of truth the ONNX file is checked against, and Grad-CAM
                (which needs gradients) runs on them for the class ONNX Runtime predicted.
            onnx_path: with runtime "onnx", an export of this very checkpoint (`lungxray export`); default: an
                export made once and cached under the lungxray cache folder.
        Raises:
            CheckpointError: no usable checkpoint (the message says how to get one), or an ONNX file
                exported from a different checkpoint.
        """
        from .checkpoint import load_checkpoint
        from .devices import resolve_device

        path = Path(model) if model is not None else DEFAULT_MODEL
        if model is None and not (path.is_file() and path.with_suffix(".json").is_file()):
            raise CheckpointError(
                f"no default model is installed ({path} and its .json are missing). Train one, e.g. "
                "`lungxray train --config configs/seed/3-cnn.toml --out runs/cnn`, then pass --model runs/cnn"
            )
        if path.is_dir() and not (path / "best.safetensors").is_file() and (path / DEFAULT_MODEL.name).is_file():
            path = path / DEFAULT_MODEL.name  # a folder holding a shipped-style classifier.safetensors
        if model is not None and not path.exists():
            raise CheckpointError(f"--model {model}: no such file or folder")
        if path.suffix == ".onnx":
            raise CheckpointError(
                f"--model {model}: give the run folder or .safetensors the ONNX file was exported from, with "
                "--runtime onnx (the PyTorch weights are checked against it and used for Grad-CAM)")
        if runtime not in RUNTIMES:
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        net, meta = load_checkpoint(path)
        net = net.to(resolve_device(device))
        session = _onnx_session(path, onnx_path) if runtime == "onnx" else None
        return cls(net, meta, masks=masks, mask_dir=mask_dir, cam=cam, segmenter=segmenter, checkpoint=path,
                   runtime=runtime, onnx=session)

    @property
    def cam_enabled(self) -> bool:
        return self._cam is not None

    def describe(self) -> dict:
        """The model's identity for output files: name, version, fingerprint, temperature, classes, preprocessing."""
        return {
            "name": self.model.name,
            "version": self.meta.get("version"),
            "checkpoint": self.checkpoint,
            "data_fingerprint": (self.meta.get("data") or {}).get("fingerprint"),
            "temperature": self.temperature,
            "classes": self.classes,
            "image_size": list(self.size),
            "trained_masks": self.trained_masks,
            "val_metrics": self.meta.get("val_metrics"),
            "runtime": self.runtime,
            "onnx": str(self._onnx.path) if self._onnx is not None else None,
        }

    # ------------------------------------------------------------------------------------ masks
    def find_mask(self, file: InputFile | str | Path) -> Path | None:
        """The mask file for an image: under `mask_dir` (same relative path, name or stem), else in a
        sibling `masks/` folder (the Radiography Database layout `<class>/images/x.png` + `<class>/masks/x.png`)."""
        f = file if isinstance(file, InputFile) else InputFile(Path(file), Path(Path(file).name))
        p = Path(f.path)
        names = [p.name, p.stem + ".png"]
        candidates: list[Path] = []
        if self.mask_dir is not None:
            candidates.append(self.mask_dir / f.rel)
            candidates += [self.mask_dir / n for n in names]
        bases = [p.parent.parent, p.parent] if p.parent.name.lower() in IMAGE_DIRS else [p.parent]
        for base in bases:
            for d in MASK_DIRS:
                candidates += [base / d / n for n in names]
        for c in candidates:
            if c.is_file() and c.resolve() != p.resolve():
                return c
        return None

    def _mask_plan(self, file: InputFile) -> tuple[Path | None, bool]:
        """(mask file to read, whether a mask must be predicted) for one input under the current mode."""
        if not self.masked or self.masks == "none":
            return None, False
        if self.masks == "predicted" or (self.masks == "auto" and self.trained_masks == "predicted"):
            # A model trained on predicted masks sees predicted masks: same conditions as in training.
            return None, True
        found = self.find_mask(file)
        if found is not None:
            return found, False
        if self.masks == "provided":
            raise ConfigError(
                f"{file.path}: --masks provided, but no mask was found (looked for a masks/ folder next to images/ "
                "with the same file name" + (f", and under {self.mask_dir}" if self.mask_dir else "") +
                "); pass --mask-dir DIR, or --masks auto to predict missing masks"
            )
        return None, True

    def check_inputs(self, files: Sequence[InputFile]) -> dict[str, int]:
        """Fail before any work when the masks these inputs need cannot be had. Returns mask counts."""
        counts = {"provided": 0, "predicted": 0, "none": 0}
        first_missing: InputFile | None = None
        for f in files:
            mask, predict = self._mask_plan(f)
            key = "provided" if mask is not None else "predicted" if predict else "none"
            counts[key] += 1
            if predict and first_missing is None:
                first_missing = f
        if first_missing is not None:
            self.segmenter(example=str(first_missing.path))
        return counts

    def segmenter(self, example: str | None = None):
        """The lung segmentation model, loaded on first use; a clear error when it is not available."""
        if self._segmenter is not None:
            return self._segmenter
        try:
            from .segment import Segmenter
        except ImportError as exc:
            raise CheckpointError(self._no_segmenter(f"lungxray.segment cannot be imported: {exc}", example)) from None
        try:
            self._segmenter = Segmenter.load(path=None)
        except LungxrayError as exc:
            raise CheckpointError(self._no_segmenter(str(exc), example)) from None
        return self._segmenter

    def _no_segmenter(self, reason: str, example: str | None) -> str:
        what = f"{example}: no lung mask was found for it, and " if example else ""
        return (
            f"{what}model {self.model.name!r} was trained on lung-masked images, so a mask has to be predicted, but the "
            f"lung segmentation model is not available ({reason}). Put the masks in a masks/ folder next to images/ "
            "(same file names) or pass --mask-dir DIR; or use a model trained without masks; or, knowingly, "
            "--masks none (unmasked input, outside the model's training conditions)."
        )

    # ------------------------------------------------------------------------------------ pipeline
    def _model_input(self, image: np.ndarray) -> np.ndarray:
        # Exactly the training cache: resize in float, round to uint8 (division by 255 happens in _classify).
        return to_uint8(resize_image(image, self.size))

    def _item(self, image: np.ndarray, name: str, path: str, mask: np.ndarray | None = None,
              mask_source: str | None = None, mask_path: str | None = None, wants_predicted: bool = False,
              rgb: np.ndarray | None = None) -> _Item:
        image = _check_image(image, name)
        item = _Item(path=path, name=name, model_u8=self._model_input(image), display=_display_copy(image),
                     original_shape=(int(image.shape[0]), int(image.shape[1])), wants_predicted_mask=wants_predicted,
                     ood_reasons=input_checks(image, rgb))
        if mask is not None:
            self._attach_mask(item, mask, mask_source or "provided", mask_path)
        return item

    def _attach_mask(self, item: _Item, mask: np.ndarray, source: str, mask_path: str | None) -> None:
        m = np.asarray(mask)
        if m.ndim != 2 or m.size == 0:
            raise ImageReadError(f"{item.name}: mask must be a 2-D array, got shape {m.shape}")
        m = m.astype(bool)
        # Resized straight from the mask's own size, as the training cache does (not via the display copy).
        item.mask_model = m if m.shape == self.size else resize_mask(m, self.size)
        item.mask_display = m if m.shape == item.display.shape else resize_mask(m, item.display.shape)
        item.mask_source, item.mask_path = source, mask_path
        if item.mask_model.mean() < 0.01:
            log.warning("%s: the lung mask covers less than 1%% of the image; the model sees an almost black image", item.name)

    def _forward(self, x: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(penultimate features or None, logits, probabilities) for a model-ready batch (N, 1, H, W)."""
        if self._onnx is not None:
            out = self._onnx.run(x.cpu().numpy())
            probs = out["probabilities"].astype(np.float64)
            if "logits" in out:
                logits = out["logits"]
            else:  # an export without the logits output: equal to the logits up to a constant per row
                logits = np.log(np.clip(probs, 1e-30, None)) * self.temperature
            return out.get("features"), logits, probs
        with torch.no_grad():
            feats, logits_t = self._features(self.model, x)
        logits = logits_t.cpu().numpy()
        return feats.cpu().numpy(), logits, softmax(logits, self.temperature)

    def _classify(self, items: list[_Item], cam: bool | None = None) -> list[PredictionResult]:
        """Classify prepared items; `cam` None = Grad-CAM as configured at load, False = skip it this time."""
        if cam and self._cam is None:
            raise ConfigError("Grad-CAM was requested, but this predictor was loaded without it (cam=True)")
        pending = [it for it in items if it.wants_predicted_mask and it.mask_model is None]
        if pending:
            seg = self.segmenter(example=pending[0].path)
            # The U-Net sees exactly what the training cache gives it (`data.cache.predicted_masks`): the 8-bit
            # image at the model's size; the display outline is that mask scaled up.
            masks = seg.predict([it.model_u8.astype(np.float32) / 255.0 for it in pending])
            for it, m in zip(pending, masks):
                self._attach_mask(it, m, "predicted", None)
        x = torch.from_numpy(np.stack([it.model_u8 for it in items])).float().div_(255.0).unsqueeze(1)
        theta = None
        if self.masked:
            ones = np.ones(self.size, dtype=np.uint8)
            m = np.stack([it.mask_model.astype(np.uint8) if it.mask_model is not None else ones for it in items])
            # An item without a mask (masks="none" on a masked model) passes through whole: an all-ones mask.
            x, theta = lung_view(x, torch.from_numpy(m).float().unsqueeze(1), self.lung_view, return_theta=True)
        x = x.to(self.device)
        feats, logits, probs = self._forward(x)
        use_guard = self.guard is not None and feats is not None
        distances = self.guard.distance(feats) if use_guard else [None] * len(items)
        layout = self.guard.layout if self.guard is not None else None
        layout_d = layout.distance(layout_descriptor(x)) if layout is not None else [None] * len(items)
        top = probs.argmax(axis=1)
        cams: list[np.ndarray | None] = [None] * len(items)
        if self._cam is not None and cam is not False:
            with self._cam_lock, torch.enable_grad():
                maps = self._cam(x, class_idx=torch.as_tensor(top, device=x.device))
            maps = uncrop(maps.float().cpu(), theta)[:, 0].numpy()
            cams = [resize_image(np.clip(mp, 0, 1), it.display.shape) for mp, it in zip(maps, items)]
        out = []
        for it, lg, pr, k, cm, dist, ld in zip(items, logits, probs, top, cams, distances, layout_d):
            reasons = list(it.ood_reasons)
            if dist is not None and dist > self.guard.threshold:
                reasons.append(f"unlike the training X-rays (feature distance {dist:.1f} > threshold {self.guard.threshold:.1f})")
            if ld is not None and ld > layout.threshold:
                reasons.append(f"not laid out like a frontal chest X-ray (rotated, inverted, cropped or not a radiograph?): "
                               f"layout distance {ld:.1f} > threshold {layout.threshold:.1f}")
            ood = {"flagged": bool(reasons), "reasons": reasons,
                   "distance": None if dist is None else float(dist),
                   "threshold": None if self.guard is None else self.guard.threshold,
                   "layout_distance": None if ld is None else float(ld),
                   "layout_threshold": None if layout is None else layout.threshold}
            out.append(
                PredictionResult(
                    path=it.path, name=it.name, prediction=self.classes[int(k)], probability=float(pr[k]),
                    probabilities={c: float(v) for c, v in zip(self.classes, pr)}, logits=[float(v) for v in lg],
                    image=it.display, original_shape=it.original_shape, mask=it.mask_display,
                    mask_source=it.mask_source, mask_path=it.mask_path, cam=cm, provenance=self.provenance, ood=ood,
                )
            )
        return out

    def predict_array(self, image: np.ndarray, mask: np.ndarray | None = None, name: str = "<array>", *,
                      masks: str | None = None, cam: bool | None = None,
                      rgb: np.ndarray | None = None) -> PredictionResult:
        """Classify one 2-D float image in [0, 1] (as `lungxray.data.io.read_image` returns).

        Args:
            image: (H, W) float array, 0 = black.
            mask: optional lung mask (any size, resized like the training masks); used only when the
                model was trained on masked images and `masks` is not "none".
            name: label for messages and the result's `path`.
            masks: this call's mask mode (default: the predictor's own).
            cam: False skips Grad-CAM for this call; True requires it (loaded with cam=True); None as loaded.
            rgb: the file's colour pixels, if any, for the out-of-distribution colour check
                (`lungxray.ood.read_rgb_thumbnail`).
        """
        mode = self.masks if masks is None else masks
        if mode not in MASK_MODES:
            raise ConfigError(f"masks must be one of {', '.join(MASK_MODES)}, got {mode!r}")
        use_mask = mask is not None and self.masked and mode != "none"
        if self.masked and mode == "provided" and mask is None:
            raise ConfigError(f"{name}: --masks provided, but no mask was given")
        wants = self.masked and not use_mask and mode in ("auto", "predicted")
        if mode == "predicted":
            use_mask, wants = False, True
        item = self._item(image, name, name, mask if use_mask else None, "provided", None, wants, rgb=rgb)
        return self._classify([item], cam=cam)[0]

    def predict_paths(
        self,
        paths: Iterable[str | Path | InputFile],
        batch_size: int = 16,
        skipped: list[tuple[str, str]] | None = None,
        progress: bool = False,
        workers: int = 0,
        cam: bool | None = None,
    ) -> Iterator[PredictionResult]:
        """Stream predictions for files and folders (recursively), `batch_size` images at a time.

        Unreadable files are skipped with a warning naming them (and appended to `skipped` as
        (path, reason)); a count is logged at the end. Only one batch is ever held in memory.
        `workers` > 0 reads and decodes files in that many threads ahead of the model (image decoders
        release the GIL), at most `max(2 * workers, batch_size)` files ahead; results, their order and
        the batches the model sees are the same as with 0 (everything in this thread).
        """
        from .progress import bar as progress_bar

        if batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
        if workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {workers}")
        items = list(paths)
        files = [p for p in items if isinstance(p, InputFile)]
        if len(files) != len(items):
            files = discover_inputs([p for p in items if not isinstance(p, InputFile)]) + files
        skips: list[tuple[str, str]] = skipped if skipped is not None else []
        start = len(skips)
        batch: list[_Item] = []
        ready = self._read_ahead(files, workers, batch_size)
        for f, got in progress_bar(ready, total=len(files), desc="predicting", unit="img", enabled=progress):
            if isinstance(got, str):
                self._skip(skips, start, str(f.path), got)
                continue
            batch.append(got)
            if len(batch) >= batch_size:
                yield from self._classify(batch, cam=cam)
                batch = []
        if batch:
            yield from self._classify(batch, cam=cam)
        n = len(skips) - start
        if n:
            log.warning("skipped %d of %d file(s) that could not be read as X-ray images", n, len(files))

    def _read_file(self, f: InputFile) -> _Item | str:
        """Read, decode and prepare one input; for a file that cannot be read, the reason (a str)."""
        try:
            mask_file, wants = self._mask_plan(f)
            image = read_image(f.path)
            mask = read_mask(mask_file) if mask_file is not None else None
            return self._item(image, f.rel.as_posix(), str(f.path), mask, "provided",
                              str(mask_file) if mask_file else None, wants, rgb=read_rgb_thumbnail(f.path))
        except ImageReadError as exc:
            return str(exc)
        except OSError as exc:
            return f"{f.path}: {exc.strerror or exc}"

    def _read_ahead(self, files: Sequence[InputFile], workers: int, ahead: int) -> Iterator[tuple[InputFile, _Item | str]]:
        """(file, prepared item or skip reason) in input order; with `workers`, decoded in a thread pool that
        runs a bounded number of files ahead, so memory does not grow with the number of files."""
        if workers <= 0:
            for f in files:
                yield f, self._read_file(f)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        ahead = max(2 * workers, ahead)
        queue: deque = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="lungxray-read") as pool:
            try:
                for f in files:
                    queue.append((f, pool.submit(self._read_file, f)))
                    if len(queue) >= ahead:
                        done, fut = queue.popleft()
                        yield done, fut.result()
                while queue:
                    done, fut = queue.popleft()
                    yield done, fut.result()
            finally:  # stopped early (an error, Ctrl-C): drop what has not started
                for _, fut in queue:
                    fut.cancel()

    @staticmethod
    def _skip(skips: list, start: int, path: str, reason: str) -> None:
        skips.append((path, reason))
        if len(skips) - start <= _MAX_SKIP_WARNINGS:
            log.warning("skipped %s", reason)
        elif len(skips) - start == _MAX_SKIP_WARNINGS + 1:
            log.warning("skipping more unreadable files; see the final count (and predictions.json) for all")


def _onnx_session(checkpoint: Path, onnx_path: str | Path | None):
    """An ONNX Runtime session for `checkpoint`: the given export (checked to come from this checkpoint) or a
    cached one made now."""
    from .export import OnnxClassifier, cached_onnx, checkpoint_digest

    if onnx_path is None:
        return OnnxClassifier(cached_onnx(checkpoint))
    session = OnnxClassifier(onnx_path)
    source = (session.meta.get("onnx") or {}).get("source_sha256")
    if source != checkpoint_digest(checkpoint):
        raise CheckpointError(
            f"{onnx_path} was not exported from {checkpoint} (or its .json is missing or predates this check); "
            f"re-export it with `lungxray export {checkpoint} --onnx {onnx_path} --overwrite`, or leave --onnx out "
            "to export one automatically")
    if "features" not in session.outputs:
        log.warning("%s has no 'features' output (an older export): the out-of-distribution guard is off", onnx_path)
    return session


# ---------------------------------------------------------------------------------------- inputs
def _walk(folder: Path, exclude: set[Path]) -> Iterator[Path]:
    """Every non-hidden file under `folder`, sorted, skipping mask folders and excluded folders."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and d.lower() not in MASK_DIRS and (here / d).resolve() not in exclude
        )
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def discover_inputs(paths: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> list[InputFile]:
    """Expand files and folders (recursively) into the files to predict, in a stable order.

    Folders named like mask folders (`masks/`, `lung masks/`) and hidden files are not inputs;
    everything else is, and its format is sniffed from content later (so a DICOM without an
    extension works and a text file is reported, not silently dropped).

    Raises:
        DatasetError: a path does not exist, or nothing was found.
    """
    given = [Path(p) for p in paths]
    if not given:
        raise DatasetError("no input given: pass image files or folders")
    missing = [p for p in given if not p.exists()]
    if missing:
        raise DatasetError(f"{missing[0]}: no such file or folder")
    ex = {Path(e).resolve() for e in exclude}
    roots = [p.resolve() if p.is_dir() else p.resolve().parent for p in given]
    base = Path(os.path.commonpath([str(r) for r in roots]))
    seen: set[Path] = set()
    out: list[InputFile] = []
    for p in given:
        for f in (_walk(p, ex) if p.is_dir() else [p]):
            try:
                key = f.resolve()
                regular = f.is_file()
            except (RuntimeError, OSError) as exc:  # a symlink loop, a dangling or unreadable link
                log.warning("skipped %s: %s", f, exc)
                continue
            if not regular and f == p:
                log.warning("skipped %s: not a regular file (a folder, FIFO, socket or device?)", f)
            if key in seen or not regular:
                continue
            seen.add(key)
            try:
                rel = key.relative_to(base)
            except ValueError:  # a symlink pointing elsewhere
                rel = Path(f.name)
            out.append(InputFile(f, rel))
    if not out:
        raise DatasetError(f"no files found in {', '.join(str(p) for p in given)}")
    return out


def overlay_names(files: Sequence[InputFile], taken: Iterable[str] = ()) -> dict[Path, Path]:
    """Overlay path (relative to the output folder) for each input: its relative path with `.png`.

    When inputs would share a name (`x.png` and `x.dcm`), the PNG keeps `x.png` and the others keep
    their full name (`x.dcm.png`); any remaining clash, also with the `taken` names (overlays an
    earlier run already wrote), gets `-2`, `-3`...
    """
    def key(p: Path) -> str:
        return p.as_posix().lower()  # case-insensitive: macOS/Windows file systems

    natural = [f.rel.with_suffix(".png") for f in files]
    counts: dict[str, int] = {}
    for n in natural:
        counts[key(n)] = counts.get(key(n), 0) + 1
    taken = {t.lower() for t in taken}
    out: dict[Path, Path] = {}
    for f, nat in zip(files, natural):
        first = nat if counts[key(nat)] == 1 or f.rel.suffix.lower() == ".png" else f.rel.with_name(f.rel.name + ".png")
        cand, i = first, 2
        while key(cand) in taken:
            cand, i = first.with_name(f"{first.name[:-4]}-{i}.png"), i + 1
        taken.add(key(cand))
        out[f.path] = cand
    return out


# ---------------------------------------------------------------------------------------- outputs
@dataclass
class PredictionRun:
    """What `predict_to_folder` did."""

    out: Path
    classes: list[str]
    rows: list[dict]
    skipped: list[tuple[str, str]]
    csv_path: Path
    json_path: Path
    overlays: list[Path]
    model: dict
    resumed: int = 0
    """With --resume: how many of `rows` (the first ones) an earlier run had already written."""


FLUSH_SECONDS = 2.0
"""predict_to_folder rewrites predictions.csv/.json (atomically) this often while it runs, so an interrupted run
loses at most a few seconds of work to --resume; the interval grows with the files so rewriting stays under ~10%."""


def _resume_rows(csv_path: Path, json_path: Path, classes: list[str], model: dict) -> list[dict]:
    """The rows an earlier run left in the output folder: predictions.csv says which inputs are done;
    predictions.json, when it has them, gives their full records (it is written first, so it may hold more)."""
    if not csv_path.is_file():
        return []
    header = ["path", "prediction", "probability", *classes]
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            table = list(csv.reader(fh))
        old = read_json(json_path) if json_path.is_file() else {}
        detail = {r["path"]: r for r in old.get("rows", [])}
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{csv_path.parent}: earlier predictions cannot be read to resume ({exc}); "
                          "use --overwrite to start again") from None
    if not table or table[0] != header or any(len(r) != len(header) for r in table[1:]):
        raise ConfigError(f"{csv_path} does not hold this model's predictions (expected columns {', '.join(header)}); "
                          "--resume needs the same model: use another --out, or --overwrite to start again")
    for key in ("name", "version", "data_fingerprint", "image_size", "trained_masks"):
        if key in old.get("model", {}) and old["model"][key] != model.get(key):
            raise ConfigError(f"{json_path} was made with another model ({key} {old['model'][key]!r}, now "
                              f"{model.get(key)!r}); --resume needs the same model: use another --out, or --overwrite")
    rows = []
    for path, prediction, probability, *probs in table[1:]:
        path = csv_unsafe(path)
        try:
            row = detail.get(path) or {"path": path, "name": path, "prediction": prediction,
                                       "probability": float(probability),
                                       "probabilities": {c: float(v) for c, v in zip(classes, probs)}}
        except ValueError:
            raise ConfigError(f"{csv_path}: unreadable row for {path}; use --overwrite to start again") from None
        rows.append(row)
    return rows


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP)."""


def csv_safe(cell: str) -> str:
    """Neutralise a text cell for spreadsheets: a leading formula character gets a `'` before it.
    predictions.json keeps the real value; `csv_unsafe` undoes this when a CSV is read back (--resume)."""
    return "'" + cell if cell.startswith(FORMULA_START) or cell.startswith("'") and cell[1:2] in FORMULA_START + ("'",) else cell


def csv_unsafe(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:2] in FORMULA_START + ("'",) else cell


def _csv_text(rows: list[dict], classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180; a "\r" inside a file name is then quoted, not a row end
    w.writerow(["path", "prediction", "probability", *classes])
    for r in rows:
        w.writerow([csv_safe(r["path"]), r["prediction"], f"{r['probability']:.6f}", *(f"{r['probabilities'][c]:.6f}" for c in classes)])
    return buf.getvalue()


def predict_to_folder(paths: Sequence[str | Path], out: str | Path = "test_results", model: str | Path | None = None,
                      **options) -> "PredictionRun":
    """Classify files into folder `out`; `options` and what is written are those of `_predict_to_folder`.

    The folder is checked for writing before the model loads, and locked while the run writes it: a second
    run aimed at the same folder is refused instead of silently replacing this run's rows."""
    created = not Path(out).exists()
    check_output_folder(out)
    try:
        with output_lock(out, "predict"):
            return _predict_to_folder(paths, out, model, **options)
    except BaseException:
        if created and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise


def _predict_to_folder(
    paths: Sequence[str | Path],
    out: str | Path = "test_results",
    model: str | Path | None = None,
    masks: str = "auto",
    mask_dir: str | Path | None = None,
    cam: bool = False,
    batch_size: int = 16,
    overwrite: bool = False,
    overlays: bool = True,
    device: str = "cpu",
    progress: bool = False,
    predictor: Predictor | None = None,
    resume: bool = False,
    workers: int = 0,
) -> PredictionRun:
    """Predict files/folders and write `predictions.csv`, `predictions.json` and one overlay PNG per input.

    Nothing is overwritten unless `overwrite`: existing outputs are counted and refused before any work.
    With `resume`, the inputs already in `out/predictions.csv` are skipped and the new rows are added to it
    (overlays of inputs it does not list yet, left by an interrupted run, are redone). Both files are
    rewritten atomically every few seconds while the run goes on, so an interrupted run can be resumed.
    Images are streamed: memory holds one batch plus the read-ahead of `workers` decoding threads.
    Pass `predictor` to reuse a loaded one (then `model`, `masks`, `mask_dir`, `cam` and `device` are its own).

    Returns:
        PredictionRun with the rows (earlier rows first when resuming, then input order), skipped files
        and written paths.
    """
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--resume continues the predictions in --out and --overwrite replaces them: give only one")
    pred = predictor or Predictor.load(model, masks=masks, mask_dir=mask_dir, device=device, cam=cam)
    files = discover_inputs(paths, exclude=[out])
    csv_path, json_path = out / "predictions.csv", out / "predictions.json"
    desc = pred.describe()
    done = _resume_rows(csv_path, json_path, pred.classes, desc) if resume else []
    if done:
        seen = {r["path"] for r in done} | {str(Path(r["path"]).resolve()) for r in done}
        files = [f for f in files if str(f.path) not in seen and str(f.path.resolve()) not in seen]
    names = overlay_names(files, taken=[r["overlay"] for r in done if r.get("overlay")])
    targets = [csv_path, json_path] + ([out / names[f.path] for f in files] + [out / "index.html"] if overlays else [])
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite and not resume:
        raise ConfigError(
            f"{len(existing)} file(s) in {out} would be overwritten (e.g. {existing[0]}); "
            "pass --overwrite to replace them, --resume to continue them, or choose another --out"
        )
    pred.check_inputs(files)
    rows: list[dict] = list(done)
    written: list[Path] = []
    skipped: list[tuple[str, str]] = []
    overlay_of = {str(path): rel for path, rel in names.items()}
    label = f"{pred.model.name} {pred.meta.get('version') or ''}".strip()

    def save() -> None:
        # JSON first: after a crash between the two, predictions.csv (what --resume trusts) lists no row
        # that predictions.json lacks.
        write_json(json_path, {
            "provenance": pred.provenance,
            "model": desc,
            "settings": {"masks": pred.masks, "mask_dir": str(pred.mask_dir) if pred.mask_dir else None,
                         "cam": pred.cam_enabled, "batch_size": batch_size},
            "classes": pred.classes,
            "n_predicted": len(rows),
            "skipped": [{"path": p, "error": e} for p, e in skipped],
            "rows": rows,
        })
        atomic_write_text(csv_path, _csv_text(rows, pred.classes))

    last_save, save_cost = time.monotonic(), 0.0
    try:
        for res in pred.predict_paths(files, batch_size=batch_size, skipped=skipped, progress=progress, workers=workers):
            row = res.row()
            row["overlay"] = None
            if overlays:
                from .report.overlay import write_overlay  # matplotlib: imported only when overlays are drawn

                rel = overlay_of[res.path]
                written.append(write_overlay(out / rel, res, pred.classes, model_label=label))
                row["overlay"] = rel.as_posix()
            rows.append(row)
            if time.monotonic() - last_save >= max(FLUSH_SECONDS, 10 * save_cost):
                started = time.monotonic()
                save()
                last_save = time.monotonic()
                save_cost = last_save - started
    except KeyboardInterrupt:
        if len(rows) > len(done):
            save()  # keep what is done: `--resume` continues from here
        raise
    if not rows:
        raise ImageReadError(f"none of the {len(files)} file(s) could be read as an X-ray image (first: {skipped[0][1]})")
    save()
    if overlays:
        from .report.gallery import write_gallery

        write_gallery(out, rows, desc, pred.classes)
    return PredictionRun(out, pred.classes, rows, skipped, csv_path, json_path, written, desc, resumed=len(done))

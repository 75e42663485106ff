"""The one inference pipeline: read -> preprocess -> mask -> classify -> explain.

`lungxray predict`, the REST server and Python callers all go through `Predictor`, so a fix lands
everywhere and preprocessing cannot drift from training. Training caches every image as
`to_uint8(resize_image(read_image(path), size))` and divides by 255 when it builds a batch, then
multiplies by the lung mask when the model was trained on masked images; `Predictor` does exactly
the same, in the same order, in `_model_input` and `_classify`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..ood import FeatureGuard, guard_path, input_checks, layout_descriptor, read_rgb_thumbnail
from ..errors import CheckpointError, ConfigError, ImageReadError
from ..data.io import read_image, read_mask, resize_image, resize_mask, to_uint8
from ..preprocess import LungView, lung_view, read_size, uncrop
from ..metrics import softmax
from ..models import Classifier
from .explain import _FeatureTap, make_gradcam
from .inputs import discover_inputs
from .masks import find_mask, load_lung_segmenter, mask_plan, reads_mask_files
from .results import (DEFAULT_MODEL, DISPLAY_MAX_SIDE, INTENDED_USE, MASK_MODES, MODEL_CARD, NOTICE, RUNTIMES,
                      InputFile, PredictionResult, _MAX_SKIP_WARNINGS)

log = logging.getLogger(__name__)

MIN_LUNG_SHARE = 0.01
"""A mask covering less of the model's input than this means no lungs were found: the result is flagged (ood)."""


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
            raise ConfigError(f"masks={masks}: must be one of {', '.join(MASK_MODES)}")
        self.model = model.eval()
        self.meta = meta
        self.classes: list[str] = list(meta.get("classes", model.classes))
        self.size: tuple[int, int] = tuple(int(v) for v in meta.get("image_size", model.spec.input_size))  # type: ignore[assignment]
        self.temperature = float(meta.get("temperature", 1.0))
        self.trained_masks = str(meta.get("masks", "none"))
        self.masked = self.trained_masks != "none"
        sized = {**meta, "image_size": list(self.size)}  # metadata built by hand may leave the size to the model
        self.lung_view = LungView.from_meta(sized)
        # Images (and masks) are read at this size; the lung view resamples them to self.size, the model's input.
        self.read_size: tuple[int, int] = read_size(sized)
        self.masks = masks
        self.mask_dir = Path(mask_dir) if mask_dir is not None else None
        if self.mask_dir is not None and not self.mask_dir.is_dir():
            raise ConfigError(f"mask_dir={self.mask_dir}: no such folder")
        if self.mask_dir is not None and not reads_mask_files(masked=self.masked, mode=masks, trained=self.trained_masks):
            why = ("the model was trained on whole images" if not self.masked else
                   f"masks={masks}" if masks != "auto" else
                   "a model trained on predicted masks is given predicted masks under masks=auto; pass masks=provided "
                   "to use yours")
            log.warning("mask_dir=%s is not used: %s", self.mask_dir, why)
        if not self.masked and masks in ("provided", "predicted"):
            raise ConfigError(
                f"masks={masks}: model {model.name!r} was trained on unmasked images, so masking its input would "
                "change what it sees; use masks=auto (or none) with this model"
            )
        if self.masked and masks == "none":
            log.warning("model %s was trained on lung-masked images; masks=none (--masks none) feeds it unmasked images, "
                        "outside its training conditions", model.name)
        self.device = next(model.parameters()).device
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime={runtime}: must be one of {', '.join(RUNTIMES)}")
        if runtime == "onnx" and onnx is None:
            raise ConfigError("the ONNX runtime needs an ONNX session: build the predictor with Predictor.load and runtime=onnx")
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
                raise ConfigError(f"cam=True: model {model.name!r} has no convolutional layer registered for Grad-CAM "
                                  "(its ModelSpec.cam_layer is empty); use a convolutional model such as cnn")
            if layer not in dict(model.named_modules()):
                raise CheckpointError(f"cam=True: model {model.name!r} has no layer {layer!r}")
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
        from ..checkpoint import load_checkpoint
        from ..devices import resolve_device

        path = Path(model) if model is not None else DEFAULT_MODEL
        if model is None and not (path.is_file() and path.with_suffix(".json").is_file()):
            raise CheckpointError(
                f"no default model is installed ({path} and its .json are missing). Train one, e.g. "
                "`lungxray train --config configs/seed/3-cnn.toml --out runs/cnn`, then pass model=runs/cnn"
            )
        if path.is_dir() and not (path / "best.safetensors").is_file() and (path / DEFAULT_MODEL.name).is_file():
            path = path / DEFAULT_MODEL.name  # a folder holding a shipped-style classifier.safetensors
        if model is not None and not path.exists():
            raise CheckpointError(f"model={model}: no such file or folder")
        if path.suffix == ".onnx":
            raise CheckpointError(
                f"model={model}: give the run folder or .safetensors the ONNX file was exported from, with "
                "runtime=onnx (the PyTorch weights are checked against it and used for Grad-CAM)")
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime={runtime}: must be one of {', '.join(RUNTIMES)}")
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
            "read_size": list(self.read_size),  # the size images are read at (image_size unless the view reads larger)
            "trained_masks": self.trained_masks,
            "val_metrics": self.meta.get("val_metrics"),
            "runtime": self.runtime,
            "onnx": str(self._onnx.path) if self._onnx is not None else None,
        }

    # ------------------------------------------------------------------------------------ masks
    def find_mask(self, file: InputFile | str | Path) -> Path | None:
        """The mask file for an image (see `masks.find_mask`)."""
        return find_mask(file, self.mask_dir)

    def _mask_plan(self, file: InputFile) -> tuple[Path | None, bool]:
        return mask_plan(file, masked=self.masked, mode=self.masks, trained=self.trained_masks, mask_dir=self.mask_dir)

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
        if self._segmenter is None:
            self._segmenter = load_lung_segmenter(self.model.name, example, self.meta.get("segmenter"))
        return self._segmenter

    # ------------------------------------------------------------------------------------ pipeline
    def _model_input(self, image: np.ndarray) -> np.ndarray:
        # Exactly the training cache: resize in float, round to uint8 (division by 255 happens in _classify).
        return to_uint8(resize_image(image, self.read_size))

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
        item.mask_model = m if m.shape == self.read_size else resize_mask(m, self.read_size)
        item.mask_display = m if m.shape == item.display.shape else resize_mask(m, item.display.shape)
        item.mask_source, item.mask_path = source, mask_path
        share = float(item.mask_model.mean())
        if share < MIN_LUNG_SHARE:
            # A lung-only model then sees an almost black image: its answer carries no information about the lungs,
            # so the result is flagged like any other input outside what the model knows.
            log.warning("%s: the lung mask covers less than %.0f%% of the image; the model sees an almost black image",
                        item.name, 100 * MIN_LUNG_SHARE)
            item.ood_reasons.append(f"no lungs found: the lung mask covers {share:.1%} of the image (under "
                                    f"{MIN_LUNG_SHARE:.0%}), so the model saw an almost black image")

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
            # image at the size the model reads; the display outline is that mask scaled up.
            masks = seg.predict([it.model_u8.astype(np.float32) / 255.0 for it in pending])
            for it, m in zip(pending, masks):
                self._attach_mask(it, m, "predicted", None)
        x = torch.from_numpy(np.stack([it.model_u8 for it in items])).float().div_(255.0).unsqueeze(1)
        theta = None
        if self.masked:
            ones = np.ones(self.read_size, dtype=np.uint8)
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
            raise ConfigError(f"{name}: masks=provided, but no mask was given")
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
        warn: bool = True,
    ) -> Iterator[PredictionResult]:
        """Stream predictions for files and folders (recursively), `batch_size` images at a time.

        Unreadable files are skipped with a warning naming them (and appended to `skipped` as
        (path, reason)); a count is logged at the end. `warn=False` leaves the telling to the caller (the
        Python API raises for one unreadable file instead). Only one batch is ever held in memory.
        `workers` > 0 reads and decodes files in that many threads ahead of the model (image decoders
        release the GIL), at most `max(2 * workers, batch_size)` files ahead; results, their order and
        the batches the model sees are the same as with 0 (everything in this thread).
        """
        from ..progress import bar as progress_bar

        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be >= 1")
        if workers < 0:
            raise ConfigError(f"workers={workers}: must be >= 0")
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
                self._skip(skips, start, str(f.path), got, warn)
                continue
            batch.append(got)
            if len(batch) >= batch_size:
                yield from self._classify(batch, cam=cam)
                batch = []
        if batch:
            yield from self._classify(batch, cam=cam)
        n = len(skips) - start
        if n and warn:
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
    def _skip(skips: list, start: int, path: str, reason: str, warn: bool = True) -> None:
        skips.append((path, reason))
        if not warn:
            return
        if len(skips) - start <= _MAX_SKIP_WARNINGS:
            log.warning("skipped %s", reason)
        elif len(skips) - start == _MAX_SKIP_WARNINGS + 1:
            log.warning("skipping more unreadable files; see the final count (and predictions.json) for all")


def _onnx_session(checkpoint: Path, onnx_path: str | Path | None):
    """An ONNX Runtime session for `checkpoint`: the given export (checked to come from this checkpoint) or a
    cached one made now."""
    from ..export import OnnxClassifier, cached_onnx, checkpoint_digest

    if onnx_path is None:
        return OnnxClassifier(cached_onnx(checkpoint))
    session = OnnxClassifier(onnx_path)
    source = (session.meta.get("onnx") or {}).get("source_sha256")
    if source != checkpoint_digest(checkpoint):
        raise CheckpointError(
            f"{onnx_path} was not exported from {checkpoint} (or its .json is missing or predates this check); "
            f"re-export it with `lungxray export {checkpoint} --onnx {onnx_path} --overwrite`, or leave onnx_path= out "
            "to export one automatically")
    if "features" not in session.outputs:
        log.warning("%s has no 'features' output (an older export): the out-of-distribution guard is off", onnx_path)
    return session


# ---------------------------------------------------------------------------------------- inputs

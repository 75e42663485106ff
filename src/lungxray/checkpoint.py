"""Checkpoints: safetensors weights + JSON metadata. Loading never executes code."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import __version__
from .errors import CheckpointError
from .models import Classifier, create_model
from .utils import atomic_write_bytes, write_json

log = logging.getLogger(__name__)

FORMAT = "lungxray-checkpoint/1"


def save_checkpoint(path_stem: str | Path, model: Classifier, meta: dict) -> Path:
    """Write `<stem>.safetensors` then `<stem>.json` (the JSON last, so its presence means both are complete)."""
    stem = Path(path_stem)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), st_save(tensors, metadata={"format": FORMAT}))
    full = {
        "format": FORMAT,
        "version": __version__,
        "model": model.name,
        "model_args": model.model_args,
        "classes": list(model.classes),
        "spec": model.spec.to_dict(),
        "image_size": list(model.spec.input_size),
        "normalization": {"mean": model.spec.mean, "std": model.spec.std, "input_range": [0.0, 1.0]},
        "temperature": 1.0,
        **meta,
    }
    write_json(stem.with_suffix(".json"), full)
    return stem.with_suffix(".safetensors")


def resolve_checkpoint(path: str | Path, which: str = "best") -> tuple[Path, Path]:
    """Accept a run folder, a `.safetensors` file or its `.json`; return (weights, metadata) paths."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{which}.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    meta = p.with_suffix(".json")
    if p.suffix not in (".safetensors",):
        raise CheckpointError(f"{path}: give a run folder or a .safetensors file (pickled .pt/.pth models are not loaded)")
    if not p.is_file() or not meta.is_file():
        raise CheckpointError(f"{path}: no checkpoint found (expected {p.name} and {meta.name})")
    return p, meta


def load_checkpoint(path: str | Path, which: str = "best") -> tuple[Classifier, dict]:
    """Rebuild the model from metadata and load its weights (strict). Returns (model in eval mode, metadata)."""
    weights, meta_path = resolve_checkpoint(path, which)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: unreadable metadata ({exc})") from None
    validate_metadata(meta, meta_path)
    try:
        model = create_model(meta["model"], input_size=meta["image_size"], classes=meta["classes"], **meta.get("model_args", {}))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{meta_path}: the model cannot be built from this metadata ({exc})") from None
    load_weights_into(model, weights, f"model {meta['model']}")
    bad = [k for k, v in model.state_dict().items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{weights}: weights hold NaN or infinity (first: {bad[0]}); this model cannot predict")
    return model, meta


def validate_metadata(meta: object, where: str | Path) -> dict:
    """Check checkpoint metadata field by field; the error names the first wrong field and what it should be."""
    import math
    import re

    from .config import MASK_MODES
    from .models.registry import list_models

    def fail(field: str, why: str) -> None:
        raise CheckpointError(f"{where}: metadata field {field!r} {why}")

    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    if not str(meta.get("format", "")).startswith("lungxray-checkpoint/"):
        raise CheckpointError(f"{where}: not a lungxray checkpoint (no 'format' field)")
    if not isinstance(meta.get("model"), str):
        fail("model", "is missing or not a string")
    if meta["model"] not in list_models():
        fail("model", f"names an unknown architecture {meta['model']!r} (known: {', '.join(list_models())})")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes)):
        fail("classes", "must be a list of at least two non-empty strings")
    if len(set(classes)) != len(classes):
        fail("classes", f"has duplicate names {sorted({c for c in classes if classes.count(c) > 1})}")
    size = meta.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096
                                                            for v in size)):
        fail("image_size", "must be [height, width], whole numbers from 16 to 4096")
    t = meta.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.01 <= t <= 100:
        fail("temperature", "must be a number from 0.01 to 100")
    masks = meta.get("masks", "none")
    if masks not in MASK_MODES:
        fail("masks", f"must be one of {', '.join(MASK_MODES)}, got {masks!r}")
    if not isinstance(meta.get("model_args", {}), dict):
        fail("model_args", "must be an object")
    seg = meta.get("segmenter")
    if seg is not None and not (isinstance(seg, dict) and isinstance(seg.get("sha256"), str)
                                and re.fullmatch(r"[0-9a-f]{64}", seg["sha256"])):
        fail("segmenter", "must be an object with the sha256 (64 hex digits) of the lung U-Net that drew the masks")
    if "lung_view" in meta:
        from .errors import ConfigError
        from .preprocess import LungView

        try:
            LungView.from_meta(meta)
        except (ConfigError, TypeError) as exc:
            fail("lung_view", f"is invalid ({exc})")
    return meta


def load_weights_into(model: torch.nn.Module, weights: Path, what: str) -> torch.nn.Module:
    """Load a safetensors file into `model` (strict) and switch it to eval mode; errors name the file and `what`."""
    try:
        state = st_load(Path(weights).read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt weights ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not match {what} ({str(exc)[:300]})") from None
    return model.eval()


def tensors_digest(tensors: dict) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes (order-independent): a checksum for weights."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def verify_state(state: dict, path: str | Path) -> dict:
    """Refuse a training state whose weights were altered (checksum) or hold NaN/infinity."""
    model = state.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(f"{path}: not a lungxray training state (no model weights)")
    expected = state.get("model_sha256")
    if expected is not None and tensors_digest(model) != expected:
        raise CheckpointError(f"{path}: the weights do not match their checksum (the file was altered or damaged); "
                              "start again without resume=True, or from an intact copy")
    bad = [k for k, v in model.items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: weights hold NaN or infinity (first: {bad[0]}); this state cannot be resumed")
    return state


def load_state(path: str | Path) -> dict:
    """Load a resumable training state (`torch.load(weights_only=True)`: tensors and plain data only)."""
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise CheckpointError(f"{path}: the training state file is empty (a crash while it was first written?); "
                              "delete it and start again without resume=True")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError... for unsafe or corrupt files
        text = str(exc)
        if "weights_only" in text or "Weights only load failed" in text:
            raise CheckpointError(f"{path}: refused: it holds pickled Python objects besides tensors and plain data, "
                                  "which lungxray never loads (unpickling can run code)") from None
        first = (text.splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: unreadable training state ({first[:200]})") from None


def ship_checkpoint(run: str | Path, dest_stem: str | Path, overwrite: bool = False, which: str = "best",
                    half: bool = False) -> list[Path]:
    """Copy a run's checkpoint (weights, metadata, OOD statistics and the list of images it saw, `seen.json`) to
    `dest_stem`.{safetensors,json,ood.safetensors,seen.json}.

    This is how the package's default model is replaced: one command, the same four files. Everything is read,
    converted and checked before the first file is written; a shipped OOD file that the new checkpoint has no
    counterpart for is removed (it describes the previous model's features), never left beside the new weights.
    """
    weights, meta = resolve_checkpoint(run, which)
    load_checkpoint(weights)  # refuse to ship something that does not load
    from .ood import guard_path
    from .seen import seen_path

    dest = Path(dest_stem)
    ood, dest_ood = guard_path(weights), guard_path(dest.with_suffix(".safetensors"))
    seen, dest_seen = seen_path(weights), seen_path(dest.with_suffix(".safetensors"))
    targets = [dest.with_suffix(".safetensors"), dest.with_suffix(".json"), dest_ood, dest_seen]
    existing = [d for d in targets if d.exists()]
    if existing and not overwrite:
        raise CheckpointError(f"{existing[0]} exists; pass overwrite=True to replace the shipped model")
    data, meta_bytes = weights.read_bytes(), meta.read_bytes()
    if half:
        # fp16 storage halves the package; loading casts back to the model's fp32 parameters.
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in st_load(data).items()}
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"{weights}: {bad[0]} holds values beyond float16's range (65504); ship it "
                                  "without half=True (--half)")
        data = st_save(tensors, metadata={"format": FORMAT, "stored_dtype": "float16"})
        meta_bytes = (json.dumps({**json.loads(meta_bytes), "stored_dtype": "float16"}, indent=2) + "\n").encode()
    files = [(targets[0], data), (targets[1], meta_bytes)]
    if ood.is_file():
        files.append((dest_ood, ood.read_bytes()))
    stale_ood = not ood.is_file() and dest_ood.exists()
    if stale_ood:  # first: an interruption below must not leave it beside the new weights
        dest_ood.unlink()
    if seen.is_file():
        files.append((dest_seen, seen.read_bytes()))
    elif dest_seen.exists():  # the previous model's list says nothing about this one
        dest_seen.unlink()
        log.warning("%s has no list of the images it trained on (%s, written by train since lungxray recorded one): "
                    "the shipped model's was removed, not kept; `evaluate` cannot say which images it saw until "
                    "`lungxray.seen.write_seen_for_run` writes one", weights, seen.name)
    for dst, blob in files:
        atomic_write_bytes(dst, blob)
    if stale_ood:
        from .calibrate import MIN_CALIBRATION_IMAGES as least

        log.warning("%s has no OOD statistics (%s): the shipped model's were removed, not kept; the out-of-distribution "
                    "guard stays off until the run is calibrated (`lungxray calibrate RUN --data DATA`, which needs at "
                    "least %d training and %d validation images) and shipped again", weights, ood.name, least, least)
    return [d for d, _ in files]

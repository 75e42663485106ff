"""The step after training: temperature scaling and the out-of-distribution guard, fitted on a run's best checkpoint.

`lungxray train` runs it at the end (unless `calibrate = false`); `lungxray calibrate RUN` runs it on its own.
Only the training and validation splits are used; the test split is never touched.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint
from .data.api import SplitData, load_split
from .devices import resolve_device
from .errors import ConfigError
from .inference import predict_logits
from .preprocess import LungView, read_size
from .utils import write_json

log = logging.getLogger(__name__)
MIN_CALIBRATION_IMAGES = 50
"""A temperature (or an OOD threshold) fitted on fewer validation images is noise: below this T stays 1."""


def calibrate_run(out: Path, split: SplitData, val_idx: np.ndarray, y_val: np.ndarray, masks: str,
                  progress: bool = False, device=None) -> float:
    """Fit, on the best checkpoint, temperature scaling (validation NLL) and the OOD guard (train features,
    validation threshold); both go into best.json and are used by evaluate and predict.

    With `progress`, bars count the validation and training images scored; `device` (a torch.device or None for the
    CPU) is where the scoring runs, e.g. the GPU a training just used."""
    from .metrics import expected_calibration_error, fit_temperature, softmax

    best, meta = load_checkpoint(out, "best")
    if device is not None:
        best = best.to(device)
    view = LungView.from_meta(meta)
    logits = predict_logits(best, split, val_idx, masks, view=view, progress=progress, desc="calibrating (val)")
    # A temperature fitted on a handful of images is noise; below this we keep T = 1.
    t = float(fit_temperature(logits, y_val)) if len(val_idx) >= MIN_CALIBRATION_IMAGES else 1.0
    meta["temperature"] = t
    meta["calibration"] = {
        "method": "temperature scaling (NLL) on the validation split" if len(val_idx) >= MIN_CALIBRATION_IMAGES
        else f"skipped: fewer than {MIN_CALIBRATION_IMAGES} validation images",
        "n": int(len(val_idx)),
        "val_ece_before": float(expected_calibration_error(y_val, softmax(logits, 1.0))),
        "val_ece_after": float(expected_calibration_error(y_val, softmax(logits, t))),
    }
    # The OOD guard is fitted on the same best checkpoint: training features, threshold from validation.
    from .ood import fit_guard_for_run

    train_idx = split.indices("train")
    if len(train_idx) >= MIN_CALIBRATION_IMAGES and len(val_idx) >= MIN_CALIBRATION_IMAGES:
        guard = fit_guard_for_run(out, best, split, train_idx, val_idx, masks, view=view, progress=progress)
        meta["ood"] = {"method": "Mahalanobis distance of penultimate features (Ledoit-Wolf)",
                       "file": "best.ood.safetensors", "threshold": guard.threshold, "quantile": 0.995}
    else:
        from .ood import guard_path

        meta.pop("ood", None)
        guard_path(out).unlink(missing_ok=True)  # the predictor loads whatever guard file it finds
        log.warning("OOD guard not fitted: it needs at least %d training and %d validation images (this split has "
                    "%d and %d); predictions from this run are not checked for inputs unlike its training X-rays",
                    MIN_CALIBRATION_IMAGES, MIN_CALIBRATION_IMAGES, len(train_idx), len(val_idx))
    write_json(out / "best.json", meta)
    return t


def calibrate_existing(run: str | Path, data: str | Path, cache_dir: str | Path | None = None, progress: bool = True,
                       overwrite: bool = False, device: str = "cpu") -> dict:
    """Fit temperature scaling and the OOD guard for an existing run, on its own validation split.

    For runs trained with `calibrate = false`; a run that has a calibration keeps it unless `overwrite`. The test
    split is not touched. Returns the updated metadata.
    """
    from .utils import output_lock, read_json

    run = Path(run)
    if not (run / "best.json").is_file():
        raise ConfigError(f"{run}: not a run folder (no best.json)")
    # A training still writing this run would replace best.json under us: one writer at a time.
    with output_lock(run, "train or calibrate"):
        _, meta = load_checkpoint(run, "best")  # validated metadata, and weights that load
        fitted = "calibration" in meta and not str(meta["calibration"].get("method", "")).startswith("skipped")
        if fitted and not overwrite:
            raise ConfigError(f"{run} is already calibrated (temperature {meta.get('temperature', 1.0):.3f}, "
                              f"{meta['calibration'].get('method', '?')}); pass overwrite=True to fit it again")
        split = load_split(data, run / "split.csv", meta["classes"], read_size(meta), cache_dir=cache_dir, progress=progress,
                           masks=meta.get("masks", "none"))
        val_idx = split.indices("val")
        calibrate_run(run, split, val_idx, split.labels()[val_idx], meta.get("masks", "none"), progress=progress,
                      device=resolve_device(device))
        return read_json(run / "best.json")

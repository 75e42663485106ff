"""What every training run folder shares, classifier or segmenter: preparing the folder, the history file and the
resumable state (`state.pt`, replaced atomically after every epoch so a run killed at any moment resumes)."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import tensors_digest
from .errors import ConfigError
from .utils import atomic_write_bytes, atomic_write_text

STATE = "state.pt"


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Create `out` for a new run, or check it holds one to resume; an existing run is replaced only with overwrite."""
    if out.exists() and any(out.iterdir()):
        if resume:
            if not (out / STATE).is_file():
                raise ConfigError(f"{out}: nothing to resume (no {STATE}: it stopped before training began); "
                                  "start it again with overwrite=True")
            # Temporary files of writes cut short by a crash (never visible under a final name).
            for tmp in out.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            return
        if not overwrite:
            raise ConfigError(f"{out} already holds a run; use resume=True to continue it, overwrite=True to replace it, "
                              "or another out=")
        shutil.rmtree(out)
    elif resume:
        raise ConfigError(f"{out}: nothing to resume (folder missing or empty)")
    out.mkdir(parents=True, exist_ok=True)


def write_history(path: Path, rows: list[dict], columns: Sequence[str] | None = None) -> None:
    """history.csv, one row per epoch, written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns or rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def save_state(out: Path, model: torch.nn.Module, **rest) -> None:
    """Write `out/state.pt`: the weights with their checksum, the torch RNG and `rest` (optimiser, schedule, history,
    ...), all tensors and plain data so `load_state` reads it with weights_only=True."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"model": weights, "model_sha256": tensors_digest(weights), "torch_rng": torch.get_rng_state(), **rest}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(out / STATE, buf.getvalue())

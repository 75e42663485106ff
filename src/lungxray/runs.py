"""What every training run shares, classifier or segmenter: preparing the run folder, the epoch loop (seeded
shuffling, progress, history, the resumable state written last, Ctrl-C) and the state file (`state.pt`, replaced
atomically after every epoch so a run killed at any moment resumes exactly).

A training uses the loop like this; everything model-specific stays in the caller:

    loop = EpochLoop(out, epochs, seed, batch_size, history, save_state, progress, resume_hint)
    with loop.interruptible():
        for ep in loop.epochs(start_epoch):
            for idx in ep.batches(train_indices):
                ...one optimiser step...; ep.add(loss, n, correct)
            ...validate...
            row = loop.record(ep, {"val_loss": ..., ...}, lr)      # history row; refuses non-finite losses
            ...write checkpoints...
            loop.commit(ep, message)                               # history.csv, then state.pt, then the message
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import tensors_digest
from .errors import ConfigError, TrainingError
from .progress import bar as progress_bar
from .utils import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from .distributed import DistContext

log = logging.getLogger(__name__)

STATE = "state.pt"


# Files that make a folder a lungxray run (classifier or segmenter): what overwrite may replace.
RUN_MARKERS = ("config.json", STATE, "best.json", "best.safetensors", "history.csv")


RUN_FILES = ("config.json", "split.csv", "history.csv", STATE, "curves.png", "layers.json", "layers.png", "seen.json",
             "summary.json", "best.json", "best.safetensors", "best.ood.safetensors", "last.json", "last.safetensors",
             "*.onnx", ".*.tmp")
"""What a run folder may hold (names or `fnmatch` patterns): what training writes, the temporary files of writes cut
short, and an ONNX export put there (`lungxray export`, with its metadata .json beside it). With RUN_SUBFOLDERS (evaluate's eval-*, audit's audit-*), `overwrite` deletes a folder
only when it holds nothing else."""
RUN_SUBFOLDERS = ("eval-*", "audit-*")


def foreign_entries(path: Path) -> list[str]:
    """Entries of run folder `path` that no lungxray command writes there. Only the temporary files of writes cut
    short (`.NAME.XXXX.tmp`) are passed over; any other hidden entry (.git, .env) is someone's."""
    from fnmatch import fnmatch

    names = {p.name for p in path.iterdir()}
    out = []
    for item in sorted(path.iterdir()):
        if item.is_dir() and not item.is_symlink():
            ours = any(fnmatch(item.name, p) for p in RUN_SUBFOLDERS)
        else:
            export_meta = item.suffix == ".json" and f"{item.stem}.onnx" in names
            ours = export_meta or any(fnmatch(item.name, p) for p in RUN_FILES)
        if not ours:
            out.append(item.name + ("/" if item.is_dir() else ""))
    return out


def listing(names: list[str], most: int = 5) -> str:
    """`a, b, c and 4 more`: names for a message."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding one of `RUN_MARKERS`."""
    path = Path(path)
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def prepare_run_dir(out: Path, resume: bool, overwrite: bool, inputs: Sequence[str | Path] = (),
                    check_only: bool = False) -> None:
    """Create `out` for a new run, or check it holds one to resume; an existing run is replaced only with overwrite.

    Overwrite replaces a run folder only: a non-empty folder without any of `RUN_MARKERS` (someone's data, a project
    folder) is refused, and so is one that holds any of `inputs` (the run's data, split or validation folders) or
    anything no lungxray command writes into a run (`foreign_entries`).
    With `check_only` (for a new run, before slow work), every refusal is raised but nothing is deleted or created.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder: choose another out=")
    if out.exists() and any(out.iterdir()):
        if resume:
            if not (out / STATE).is_file():
                raise ConfigError(f"{out}: nothing to resume (no {STATE}: it stopped before training began); "
                                  "start it again with overwrite=True")
            # Temporary files of writes cut short by a crash (never visible under a final name).
            for tmp in out.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            return
        if not is_run_folder(out):
            raise ConfigError(f"{out} holds files but is not a lungxray run (none of {', '.join(RUN_MARKERS)}): "
                              "a run is never written into, nor replaces, another folder; choose another out=")
        if not overwrite:
            raise ConfigError(f"{out} already holds a run; use resume=True to continue it, overwrite=True to replace it, "
                              "or another out=")
        target = out.resolve()
        for item in inputs:
            if Path(item).expanduser().resolve().is_relative_to(target):
                raise ConfigError(f"{out} holds {item}, an input of this run: overwrite would delete it; choose "
                                  "another out=")
        foreign = foreign_entries(out)
        if foreign:
            raise ConfigError(f"{out} holds files no lungxray run writes ({listing(foreign)}): overwrite would delete "
                              "them with the run; move them out, or choose another out=")
        if check_only:
            return
        shutil.rmtree(out)
    elif resume:
        raise ConfigError(f"{out}: nothing to resume (folder missing or empty)")
    if not check_only:
        out.mkdir(parents=True, exist_ok=True)


def write_history(path: Path, rows: list[dict], columns: Sequence[str] | None = None) -> None:
    """history.csv, one row per epoch, written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns or rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def rng_state() -> dict[str, torch.Tensor]:
    """This process's global generators: the CPU's and, once a GPU was used, the GPU's (dropout on a GPU draws from
    the GPU's own generator: without it a resumed GPU run is not exact)."""
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return state


def save_state(out: Path, model: torch.nn.Module, rank_rng: list[dict] | None = None, **rest) -> None:
    """Write `out/state.pt`: the weights with their checksum, the torch RNG and `rest` (optimiser, schedule, history,
    ...), all tensors and plain data so `load_state` reads it with weights_only=True.

    `rank_rng` (data-parallel runs): every process's `rng_state()`, by rank. Each process draws its own dropout
    masks for its share of the batch, so its generators move on differently from rank 0's once shares differ in
    size; resuming each rank from its own keeps a resumed run identical to an uninterrupted one.
    """
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"model": weights, "model_sha256": tensors_digest(weights), **rng_state(), **rest}
    if rank_rng is not None:
        blob["rank_rng"] = rank_rng
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(out / STATE, buf.getvalue())


def restore_state(state: dict, model: torch.nn.Module, opt: torch.optim.Optimizer, sched=None, rank: int = 0,
                  world: int = 1) -> int:
    """Load a `state.pt` into the model, optimiser, schedule and torch's RNG; returns the epoch to run next.

    Process `rank` of `world` takes its own saved generators when the run was saved by as many processes; resumed
    by a different number, every process takes rank 0's (the run continues, its dropout draws are new ones).
    """
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    rng, ranks = state, state.get("rank_rng")
    if ranks and len(ranks) == world:
        rng = ranks[rank]
    elif ranks:
        rng = ranks[0]
        if rank == 0:
            log.warning("state.pt was saved by %d processes and is resumed by %d: every process starts from rank "
                        "0's random state, so dropout draws differ from an uninterrupted run", len(ranks), world)
    elif world > 1 and int(state.get("epoch", 0)) > 0 and rank == 0:
        # Epoch 0 is written before any draw, when every rank's generators still equal rank 0's.
        log.warning("state.pt was saved without per-process random states (by one process, or by an older "
                    "lungxray): every process starts from rank 0's, so dropout draws differ from an "
                    "uninterrupted run")
    torch.set_rng_state(rng["torch_rng"])
    if rng.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda_rng"])
    return int(state["epoch"]) + 1


def gather_rng(ctx: "DistContext") -> list[dict[str, torch.Tensor]]:
    """Every rank's `rng_state()`, by rank (a collective call: all ranks of `ctx` must make it)."""
    mine = rng_state()
    # Every rank must make the same gathers: the GPU's generator is kept only if every rank has used a GPU.
    if ctx.sum([float("cuda_rng" in mine)])[0] < ctx.world:
        mine.pop("cuda_rng", None)
    gathered = {key: ctx.all_gather(value) for key, value in sorted(mine.items())}
    return [{key: values[r] for key, values in gathered.items()} for r in range(ctx.world)]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """One generator per epoch, derived from the seed: shuffling and augmentation replay exactly on resume."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class Epoch:
    """One epoch in progress: its number, its generator, the shuffled batches and the running training loss."""

    def __init__(self, number: int, total: int, seed: int, batch_size: int, progress: bool) -> None:
        self.number, self.total, self.batch_size, self.progress = number, total, batch_size, progress
        self.gen = epoch_generator(seed, number)
        self.started = time.perf_counter()
        self.train_seconds = 0.0
        self.seen, self.loss_sum, self.correct = 0, 0.0, None

    def batches(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """`indices` shuffled by this epoch's generator (drawn first, before any augmentation), in batches, with a
        progress bar; the time spent here is the epoch's training time."""
        order = np.asarray(indices)[torch.randperm(len(indices), generator=self.gen).numpy()]
        bar = progress_bar(range(0, len(order), self.batch_size), desc=f"epoch {self.number}/{self.total}",
                           unit="batch", enabled=self.progress)
        for start in bar:
            yield order[start : start + self.batch_size]
            if self.seen:
                bar.set_postfix(**self._postfix())
        self.train_seconds = time.perf_counter() - self.started

    def add(self, loss: float, n: int, correct: int | None = None) -> None:
        """Count one step: its mean loss over `n` samples and, for a classifier, how many it got right."""
        self.seen += n
        self.loss_sum += loss * n
        if correct is not None:
            self.correct = (self.correct or 0) + correct

    def _postfix(self) -> dict:
        out = {"loss": f"{self.loss_sum / self.seen:.4f}"}
        if self.correct is not None:
            out["acc"] = f"{self.correct / self.seen:.3f}"
        return out


class EpochLoop:
    """The epoch loop shared by `lungxray train` and `lungxray segment train` (see the module docstring)."""

    def __init__(self, out: Path, epochs: int, seed: int, batch_size: int, history: list[dict],
                 save_state: Callable[..., None], progress: bool, resume_hint: str,
                 columns: Sequence[str] | None = None, writer: bool = True, ctx: "DistContext | None" = None) -> None:
        """`save_state(epoch)` writes the resumable state; with `ctx` (a `distributed.DistContext` of several
        processes) it is called as `save_state(epoch, rank_rng=...)` with every rank's generators."""
        self.out, self.epochs_total, self.seed, self.batch_size = out, epochs, seed, batch_size
        self.history, self.save_state, self.progress, self.resume_hint = history, save_state, progress, resume_hint
        self.columns, self.writer, self.ctx = columns, writer, ctx
        self.current = 0

    def epochs(self, start: int) -> Iterator[Epoch]:
        for number in range(start, self.epochs_total + 1):
            self.current = number
            yield Epoch(number, self.epochs_total, self.seed, self.batch_size, self.progress)

    def record(self, ep: Epoch, scores: dict, lr: float, totals: tuple[int, float, int | None] | None = None) -> dict:
        """Append the epoch's history row (training loss and accuracy, `scores`, the learning rate, time, speed).

        `totals` (seen, loss sum, correct) replaces the epoch's own counts where several processes trained together.
        Raises TrainingError, before anything of the epoch is written, when a loss is not finite: saving would
        make a NaN run look finished, and resuming would carry the NaNs on.
        """
        seen, loss_sum, correct = totals if totals is not None else (ep.seen, ep.loss_sum, ep.correct)
        train_loss = loss_sum / max(seen, 1)
        bad = {k: v for k, v in scores.items() if isinstance(v, float) and not math.isfinite(v)}
        if not math.isfinite(train_loss) or bad:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in {"train loss": train_loss, **scores}.items())
            kept = (f"{self.out} keeps the last good epoch and the best checkpoint" if self.history else
                    f"no epoch finished, so {self.out} holds no checkpoint")
            raise TrainingError(
                f"epoch {ep.number}: the loss became non-finite ({shown}); this epoch is not saved. {kept}. Lower the "
                "learning rate, or check the data for broken images")
        row = {"epoch": ep.number, "train_loss": round(train_loss, 6)}
        if correct is not None:
            row["train_acc"] = round(correct / max(seen, 1), 6)
        row.update({k: round(v, 6) if isinstance(v, float) else v for k, v in scores.items()})
        row.update({"lr": lr, "seconds": round(time.perf_counter() - ep.started, 3),
                    "images_per_s": round(seen / max(ep.train_seconds, 1e-9), 1)})
        self.history.append(row)
        return row

    def commit(self, ep: Epoch, message: str) -> None:
        """Write history.csv, then the resumable state (last: it names the epoch complete only once everything the
        epoch wrote is in place), then show `message`. Under DDP this is a collective call: every rank makes it
        every epoch (each hands over its generators), and rank 0 alone writes."""
        # Collective: every rank hands its generators over before the one writer saves them.
        rank_rng = gather_rng(self.ctx) if self.ctx is not None and self.ctx.enabled else None
        if self.writer:  # one writer; under DDP every rank holds identical weights after the all-reduced steps
            write_history(self.out / "history.csv", self.history, self.columns)
            if rank_rng is None:
                self.save_state(ep.number)
            else:
                self.save_state(ep.number, rank_rng=rank_rng)
            if self.progress:
                tqdm.write(message)
            log.info(message)  # with progress bars on too, for callers who keep a log

    @contextlib.contextmanager
    def interruptible(self):
        """On Ctrl-C, say which epoch is saved and how to continue, then stop as interrupted."""
        try:
            yield self
        except KeyboardInterrupt:
            done = self.history[-1]["epoch"] if self.history else 0
            log.warning("interrupted during epoch %d; epoch %d is saved: continue with %s", self.current, done,
                        self.resume_hint)
            raise


def say(message: str, progress: bool) -> None:
    """Print between progress bars when they are shown, else log."""
    if progress:
        tqdm.write(message)
    else:
        log.info(message)

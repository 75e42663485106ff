"""Training the lung U-Net: one readable loop.

Sources come in three roles, each a folder (see `find_pairs`):
- `data`: every pair is used for training (COVID-QU-Ex `Train`);
- `holdout_data`: pairs are split by a seed into a training share and a held-out share that is scored
  separately (the Radiography Database's Viral Pneumonia masks); the held-out file list is written into
  the model's metadata so the benchmark scores exactly those;
- `val_data`: validation only (COVID-QU-Ex `Val`).
Each validation set is reported on its own. The epoch with the best mean validation Dice (averaged over the
sets, so the bigger one does not dominate) is kept as `best`, then scored in full (post-processing, the
masks' own resolution, HD95) by the same code the benchmark uses.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..data.duplicates import MIN_SIDE
from ..data.transforms import random_affined, random_intensity
from .. import runs
from ..checkpoint import load_state, verify_state
from ..config import merge_config
from ..devices import autocast_enabled, resolve_device
from ..errors import ConfigError
from ..utils import output_lock, write_json
from .data import PairSet, find_pairs, holdout_split, load_pairs
from .evaluate import evaluate_pairs, near_duplicates_of
from .inference import Segmenter
from .model import LungUNet, save_segmenter, unet_args

log = logging.getLogger(__name__)
HELD_SIZE = 256
"""Side at which a split's held images are kept to find their copies (any side >= duplicates.MIN_SIDE works: the
detector compares 64x64 thumbnails)."""


@dataclass
class SegTrainConfig:
    """Everything that defines a segmentation run; saved as `config.json` in the run folder."""

    image_size: int = 256
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    num_res_units: int = 2
    norm: str = "batch"
    dropout: float = 0.0
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-3
    """Peak learning rate of the one-cycle schedule."""
    weight_decay: float = 1e-4
    holdout_frac: float = 0.3
    split_seed: int = 0
    seed: int = 0
    augment: bool = True
    aug_rotate: float = 10.0
    aug_shift: float = 0.06
    aug_zoom: float = 0.1
    aug_shear: float = 0.05
    aug_intensity: float = 0.2
    amp: bool = True
    """bfloat16 autocast: 2-4x faster training on CPUs with AVX-512 BF16 and on GPUs; elsewhere it is turned off
    (emulated bf16 is ~10x slower, see `devices.autocast_enabled`)."""
    device: str = "cpu"
    """cpu, cuda or auto (cuda when available)."""
    channels_last: bool = True
    threads: int = 0
    max_pairs: int | None = None
    """Use at most this many pairs per source (first by name; for quick trials)."""
    exclude_split: str = ""
    """A classifier's split manifest: leave out every training pair whose image it puts in `val` or `test`, matched
    by path (the manifest's dataset-relative path ends the image's path), so a U-Net that starts that classifier
    (`pretrained = "RUN"`) has not trained on those files. `--val` folders are filtered the same way (without
    being counted in the metadata). Copies under other names (COVID-QU-Ex) are caught only with
    `exclude_split_data`. "" = use every pair."""
    exclude_split_data: str = ""
    """With `exclude_split`: the dataset folder its paths are relative to. Then pairs whose image is a copy of a
    held (val/test) image under another name are left out too, found by content with the detector that groups
    copies when the split is made (`data.duplicates`): COVID-QU-Ex holds such copies of the Radiography Database."""

    def validate(self) -> "SegTrainConfig":
        unet_args(channels=self.channels, num_res_units=self.num_res_units, norm=self.norm, dropout=self.dropout)
        if self.image_size < 16 or self.image_size % (2 ** (len(self.channels) - 1)):
            raise ConfigError(f"image_size={self.image_size}: must be >= 16 and divisible by {2 ** (len(self.channels) - 1)} "
                              f"(2 to the number of channel levels minus one, {len(self.channels)} here)")
        if self.epochs < 1 or self.batch_size < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            bad = next(f"{k}={v}" for k, v in (("epochs", self.epochs), ("batch_size", self.batch_size), ("lr", self.lr))
                       if not (v >= 1 if k != "lr" else math.isfinite(v) and v > 0))
            raise ConfigError(f"{bad}: epochs and batch_size must be >= 1 and lr a number > 0")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ConfigError(f"max_pairs={self.max_pairs}: must be >= 1 (or unset for every pair)")
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads}: must be >= 1 (or 0 for torch's default)")
        if not 0.0 <= self.holdout_frac < 1.0:
            raise ConfigError(f"holdout_frac={self.holdout_frac}: must be in [0, 1)")
        if self.exclude_split and not Path(self.exclude_split).is_file():
            raise ConfigError(f"exclude_split={self.exclude_split}: no such split manifest (make one with `lungxray data split`)")
        if self.exclude_split_data and not self.exclude_split:
            raise ConfigError(f"exclude_split_data={self.exclude_split_data} names the dataset of an exclude_split= "
                              "manifest: give that too")
        if self.exclude_split_data and not Path(self.exclude_split_data).is_dir():
            raise ConfigError(f"exclude_split_data={self.exclude_split_data}: no such folder (the dataset the split "
                              "manifest's paths are relative to)")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SegTrainConfig":
        """Build from a dict (None means "the default"), refusing unknown keys with the nearest valid one suggested:
        the classifier's `merge_config`, so both trainings read settings the same way."""
        return merge_config(cls(), {k: v for k, v in values.items() if v is not None}).validate()


def source_name(path: str | Path) -> str:
    """A readable, machine-independent name for a data folder: its last two path parts."""
    parts = Path(path).resolve().parts
    return "/".join(parts[-2:])


@dataclass(frozen=True, eq=False)
class SplitExclusion:
    """A classifier's split manifest, read once for `exclude_split`: its dataset-relative (posix) paths."""

    manifest: str
    """The manifest's file name (no folder: it goes into the U-Net's metadata)."""
    fingerprint: str
    """`data.split.manifest_fingerprint` of its rows: what `lungxray train` compares with its own split."""
    held: frozenset[str]
    """Paths in `val` or `test`."""
    named: frozenset[str]
    """Every path."""
    held_images: np.ndarray | None = None
    """With the manifest's dataset: the held images, uint8 at `HELD_SIZE`, to find copies by content."""
    held_hashes: np.ndarray | None = None
    """Their dHashes (of the full images, as `segment.data.read_pair` hashes a pair's image)."""

    @classmethod
    def read(cls, manifest: str | Path, data: str | Path | None = None, progress: bool = False) -> "SplitExclusion":
        """Read `manifest`; with `data` (its dataset folder) also decode its val/test images for `copies_in`."""
        from ..data.split import manifest_fingerprint, read_manifest

        rows = read_manifest(manifest)
        held = sorted(r.path for r in rows if r.split in ("val", "test"))
        images = hashes = None
        if data is not None:
            images, hashes = _read_held(Path(data), held, (HELD_SIZE, HELD_SIZE), progress)
        return cls(Path(manifest).name, manifest_fingerprint(rows), frozenset(held), frozenset(r.path for r in rows),
                   images, hashes)

    def holds(self, image: str | Path) -> bool:
        """Whether the manifest puts this image (matched by its path's ending) in val or test."""
        return _named_in(Path(image), self.held)

    def copies_in(self, ps: PairSet) -> list[int]:
        """Indices of `ps` whose image is a copy (by content) of a held image; [] without the held images."""
        if self.held_images is None or not len(ps):
            return []
        from ..data.duplicates import copies_across

        return sorted({i for i, _, _ in copies_across(ps.images, self.held_images, ps.hashes, self.held_hashes)})


def _read_held(root: Path, paths: list[str], size: tuple[int, int], progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from ..data.hashing import dhash
    from ..data.io import read_image, resize_image, to_uint8
    from ..errors import ImageReadError
    from ..progress import bar as progress_bar

    if not paths:
        return np.zeros((0, *size), np.uint8), np.zeros((0, 4), np.uint64)
    images, hashes, missing = [], [], []
    for rel in progress_bar(paths, desc="reading the split's val/test images", unit="img", enabled=progress):
        try:
            image = read_image(root / rel)
        except (ImageReadError, OSError):
            missing.append(rel)
            continue
        images.append(to_uint8(resize_image(image, size)))
        hashes.append(dhash(image))
    if missing:
        raise ConfigError(f"exclude_split_data={root}: {len(missing)} of the split's {len(paths)} val/test images are "
                          f"missing or unreadable there (first {missing[0]}); is it the folder the manifest was made for?")
    return np.stack(images), np.stack(hashes)


def _named_in(image: Path, paths: frozenset[str]) -> bool:
    """Whether one of `paths` (relative to some dataset root) ends `image`'s path (symlinks not followed)."""
    parts = Path(image).absolute().parts
    return any("/".join(parts[-k:]) in paths for k in range(1, min(len(parts), 6) + 1))


def _check_sources(data, holdout_data, val_data) -> None:
    """Every data folder exists, and none is used twice (a validation folder that is also trained on scores memory)."""
    seen: dict[Path, str] = {}
    for role, folders in (("data", data), ("holdout_data", holdout_data), ("val", val_data)):
        for d in folders:
            p = Path(d).expanduser()
            if not p.is_dir():
                raise ConfigError(f"{role}={d}: no such folder")
            r = p.resolve()
            for other, other_role in seen.items():
                if r.is_relative_to(other) or other.is_relative_to(r):
                    raise ConfigError(f"{role}={d} overlaps {other_role}={other}: a folder can be trained on or "
                                      "validated on, not both (and not twice)")
            seen[r] = role


def _load_source(path: str | Path, size: tuple[int, int], cfg: SegTrainConfig, progress: bool,
                 exclusion: SplitExclusion | None = None, excluded: dict[str, int] | None = None,
                 copies_out: dict[str, int] | None = None) -> PairSet:
    """Decode a folder's pairs, without those `exclusion` holds out: by name (counted per source into `excluded`)
    and, when it has the held images, copies of them by content (counted into `copies_out`)."""
    name = source_name(path)
    pairs = find_pairs(path, name)
    if exclusion is not None:
        kept = [p for p in pairs if not _named_in(p.image, exclusion.held)]
        if exclusion.held_images is None and not any(_named_in(p.image, exclusion.named) for p in pairs):
            log.warning("exclude_split=%s: none of the %d pairs of %s is named in it, so nothing could be left out "
                        "of them (copies under other names are caught only with exclude_split_data)",
                        cfg.exclude_split, len(pairs), name)
        if excluded is not None:
            excluded[name] = excluded.get(name, 0) + len(pairs) - len(kept)
        if not kept:
            raise ConfigError(f"{path}: every pair is in the validation or test split of {cfg.exclude_split}")
        pairs = kept
    if cfg.max_pairs:
        pairs = pairs[: cfg.max_pairs]
    ps = load_pairs(pairs, size, progress, desc=f"reading {name}")
    copies = []
    if exclusion is not None and exclusion.held_images is not None:
        # The copy detector compares fine detail, which needs MIN_SIDE px: a U-Net trained on smaller images is
        # checked on a second read of the same pairs at that size (the indices line up: the same files, in order).
        probe = ps if min(size) >= MIN_SIDE else load_pairs(ps.pairs, (MIN_SIDE, MIN_SIDE), progress,
                                                           desc=f"checking {name} for copies")
        if len(probe) != len(ps):
            raise ConfigError(f"{path}: a pair became unreadable while it was checked for copies; run again")
        copies = exclusion.copies_in(probe)
        if copies_out is not None:
            copies_out[name] = copies_out.get(name, 0) + len(copies)
    if copies:
        if len(copies) == len(ps):
            raise ConfigError(f"{path}: every pair is a copy of a validation or test image of {cfg.exclude_split}")
        ps = replace(ps.subset(np.setdiff1d(np.arange(len(ps)), copies)), skipped=ps.skipped)
    return ps


def _concat(sets: list[PairSet]) -> PairSet:
    return PairSet(
        [p for s in sets for p in s.pairs],
        np.concatenate([s.images for s in sets]),
        np.concatenate([s.masks for s in sets]),
        np.concatenate([s.hashes for s in sets]),
        [x for s in sets for x in s.skipped],
    )


def _fingerprint(train_set: PairSet, val_sets: dict[str, PairSet]) -> str:
    """SHA-1 over (role, source, file) of every pair used: two runs on the same files share it."""
    import hashlib

    h = hashlib.sha1()
    for role, ps in [("train", train_set), *val_sets.items()]:
        for p in ps.pairs:
            h.update(f"{role}\t{p.source}\t{p.key}\n".encode())
    return h.hexdigest()[:16]


def _batch(ps: PairSet, idx: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "image": torch.from_numpy(ps.images[idx]).float().div_(255.0)[:, None],
        "mask": torch.from_numpy(ps.masks[idx]).float()[:, None],
    }


@torch.no_grad()
def _quick_dice(model: LungUNet, ps: PairSet, amp: bool, memory: torch.memory_format, batch_size: int = 32) -> float:
    """Mean per-image Dice at the model size, thresholded, no post-processing: cheap enough for every epoch."""
    from monai.metrics import compute_dice

    model.eval()
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(ps), batch_size):
        b = _batch(ps, np.arange(start, min(start + batch_size, len(ps))))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(b["image"].to(device).contiguous(memory_format=memory)).float().cpu() > 0
        scores.append(compute_dice(pred, b["mask"] > 0.5, include_background=True, ignore_empty=False).flatten())
    return float(torch.cat(scores).mean())


def train_segmenter(
    cfg: SegTrainConfig,
    data: list[str | Path],
    out: str | Path,
    holdout_data: list[str | Path] = (),
    val_data: list[str | Path] = (),
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> Path:
    """Train a lung U-Net and write a run folder (config.json, history.csv, best/last .safetensors + .json).

    Args:
        cfg: validated settings.
        data: training-only folders of image/mask pairs.
        out: run folder to create.
        holdout_data: folders split into a training share and a held-out validation share.
        val_data: validation-only folders.
        resume: continue the run in `out` from its last complete epoch, after a crash or kill; its saved config
            is used (of `cfg`, only `device` and `threads` apply) and the data folders must be given again and
            hold the same files.
    Returns:
        The run folder; `best.json` holds the held-out file lists and the full validation scores.
    """
    cfg.validate()
    if not data and not holdout_data:
        raise ConfigError("give at least one training folder (data= or holdout_data=)")
    out = Path(out)
    # One writer per run folder: a second `segment train` (or --resume) on the same folder is refused while this runs.
    with output_lock(out, "segment train"):
        return _train_segmenter(cfg, data, out, holdout_data, val_data, overwrite, progress, resume)


def _train_segmenter(cfg: SegTrainConfig, data, out: Path, holdout_data, val_data, overwrite: bool, progress: bool,
                     resume: bool) -> Path:
    _check_sources(data, holdout_data, val_data)  # before prepare_run_dir: with overwrite a typo must not cost a run
    inputs = [*data, *holdout_data, *val_data, *(p for p in (cfg.exclude_split, cfg.exclude_split_data) if p)]
    runs.prepare_run_dir(out, resume, overwrite, inputs=inputs)
    state = None
    if resume:
        state = verify_state(load_state(out / runs.STATE), out / runs.STATE)
        # The run continues as it started; only where and on how many threads may change.
        saved = SegTrainConfig.from_dict({**state["config"], "device": cfg.device, "threads": cfg.threads})
        if saved.to_dict() != cfg.to_dict():
            log.warning("resume=True (--resume) uses the run's saved settings; other settings given now are ignored "
                        "(except device and threads)")
        cfg = saved
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    size = (cfg.image_size, cfg.image_size)
    t_start = time.perf_counter()

    # Data: all decoded once into memory.
    exclusion = (SplitExclusion.read(cfg.exclude_split, cfg.exclude_split_data or None, progress)
                 if cfg.exclude_split else None)
    excluded: dict[str, int] = {}  # pairs left out per training source because a classifier validates or tests on them
    copies: dict[str, int] = {}  # ... because their image is a copy of one it validates or tests on, by content
    train_sets = [_load_source(d, size, cfg, progress, exclusion, excluded, copies) for d in data]
    train_hashes = np.concatenate([s.hashes for s in train_sets]) if train_sets else np.zeros((0, 4), np.uint64)
    val_sets: dict[str, PairSet] = {}
    heldout_meta: dict[str, dict] = {}
    for d in holdout_data:
        full = _load_source(d, size, cfg, progress, exclusion, excluded, copies)
        tr, held = holdout_split(full, cfg.holdout_frac, cfg.split_seed, others=train_hashes)
        train_sets.append(full.subset(tr))
        name = f"{source_name(d)} (held out)"
        if len(held):
            val_sets[name] = full.subset(held)
        heldout_meta[name] = {
            "source": source_name(d),
            "fraction": cfg.holdout_frac,
            "seed": cfg.split_seed,
            "train_pairs": int(len(tr)),
            "files": [full.pairs[i].key for i in held],
        }
    for d in val_data:
        val_sets[source_name(d)] = _load_source(d, size, cfg, progress, exclusion, None, copies)
    train_set = _concat(train_sets)
    if len(train_set) == 0:
        raise ConfigError("no training pairs left")
    write_json(out / "config.json", cfg.to_dict())
    fingerprint = _fingerprint(train_set, val_sets)
    if state is not None and state.get("data_fingerprint") != fingerprint:
        raise ConfigError(f"{out}: these data folders do not hold the files the run started with (fingerprint "
                          f"{state.get('data_fingerprint')}, now {fingerprint}); give the same data= folders")
    data_meta = {
        "data_fingerprint": fingerprint,
        "threads": torch.get_num_threads(),
        "train_sources": {s.pairs[0].source: len(s) for s in train_sets if len(s)},
        "train_pairs": len(train_set),
        "validation_sources": {k: len(v) for k, v in val_sets.items()},
        "heldout": heldout_meta,
        **({"excluded_by_split": {"manifest": exclusion.manifest, "fingerprint": exclusion.fingerprint,
                                  "pairs": excluded,
                                  **({"copies": copies} if exclusion.held_images is not None else {})}}
            if exclusion is not None else {}),
        "val_near_duplicates_of_train": {k: near_duplicates_of(v.hashes, train_set.hashes) for k, v in val_sets.items()},
        "skipped_unreadable": len(train_set.skipped) + sum(len(v.skipped) for v in val_sets.values()),
    }
    if not val_sets:
        log.warning("no validation pairs (no --val folder and no --holdout-data share): the epoch kept as best is the "
                    "one with the lowest training loss, and no Dice is measured")
    for name, n in data_meta["val_near_duplicates_of_train"].items():
        if n:
            log.warning("%d of %d validation pairs of %s are near-duplicates of training images: their Dice is "
                        "optimistic", n, len(val_sets[name]), name)

    # Forked RNG: seeding for reproducibility must not change the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = LungUNet(size, channels=cfg.channels, num_res_units=cfg.num_res_units, norm=cfg.norm, dropout=cfg.dropout)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        history, best = _fit(cfg, model, train_set, val_sets, out, data_meta, progress, state)
    epoch_seconds = sum(r["seconds"] for r in history)

    # Full scoring of the best epoch, through the same inference path as `predict` and the benchmark.
    seg = Segmenter.load(out / "best.safetensors")
    validation = {}
    for name, vs in val_sets.items():
        res = evaluate_pairs(seg, vs.pairs, progress, desc=f"scoring {name}")
        validation[name] = {"n": res["n"], "dice": res["dice"], "hd95": res["hd95"]}
        msg = (f"{name}: Dice {res['dice']['mean']:.4f} (median {res['dice']['median']:.4f}), "
               f"HD95 {res['hd95'].get('mean', float('nan')):.2f} px (median {res['hd95'].get('median', float('nan')):.2f})")
        runs.say(msg, progress)
    total_seconds = time.perf_counter() - t_start
    training = {**seg.meta["training"], "best_epoch": best["epoch"], "epochs_run": len(history),
                "seconds_all_epochs": round(epoch_seconds, 1), "seconds_total": round(total_seconds, 1),
                "history": history}
    training.pop("epoch", None)
    training.pop("seconds_training", None)
    final = {k: v for k, v in seg.meta.items() if k in ("threshold", "postprocess")}
    save_segmenter(out / "best", seg.model, {**final, "training": training, "validation": validation})
    write_json(out / "summary.json", {"best_epoch": best["epoch"], "seconds_all_epochs": round(epoch_seconds, 1),
                                      "seconds_total": round(total_seconds, 1), "validation": validation})
    return out


def _fit(cfg: SegTrainConfig, model: LungUNet, train_set: PairSet, val_sets: dict[str, PairSet], out: Path,
         data_meta: dict, progress: bool, state: dict | None = None) -> tuple[list[dict], dict]:
    from monai.losses import DiceCELoss

    device = resolve_device(cfg.device)
    amp = autocast_enabled(cfg.amp, device)
    model.to(device)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch)
    # Dice handles the lung/background imbalance; BCE gives useful gradients from the first step.
    dice_bce = DiceCELoss(sigmoid=True, batch=True)  # one logit channel: MONAI's BCE-with-logits, weights 1 and 1
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    history: list[dict] = []
    best = {"epoch": 0, "score": -math.inf}
    seconds_training = 0.0
    start_epoch = 1

    def save_state(epoch: int) -> None:
        runs.save_state(out, model, epoch=epoch, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                        history=history, best=best, seconds_training=seconds_training, config=cfg.to_dict(),
                        data_fingerprint=data_meta["data_fingerprint"])

    if state is not None:
        start_epoch = runs.restore_state(state, model, opt, sched)
        history, best, seconds_training = state["history"], state["best"], state["seconds_training"]
        log.info("resuming %s at epoch %d", out, start_epoch)
    else:
        save_state(0)  # from here on a crash at any moment leaves a run that --resume can continue
    loop = runs.EpochLoop(out, cfg.epochs, cfg.seed, cfg.batch_size, history, save_state, progress,
                          f"`lungxray segment train --resume --out {out}` with the same data folders")
    with loop.interruptible():
        for ep in loop.epochs(start_epoch):
            model.train()
            for idx in ep.batches(np.arange(len(train_set))):
                batch = _batch(train_set, np.sort(idx))
                if cfg.augment:
                    batch = random_affined(batch, ("image", "mask"), ep.gen, rotate=cfg.aug_rotate,
                                           shift=cfg.aug_shift, zoom=cfg.aug_zoom, shear=cfg.aug_shear)
                    if cfg.aug_intensity:
                        batch["image"] = random_intensity(batch["image"], ep.gen, cfg.aug_intensity)
                x = batch["image"].to(device).contiguous(memory_format=memory)
                y = batch["mask"].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(x)
                loss = dice_bce(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                ep.add(loss.item(), len(idx))
            seconds_training += ep.train_seconds
            scores = {name: _quick_dice(model, vs, amp, memory) for name, vs in val_sets.items()}
            score = float(np.mean(list(scores.values()))) if scores else -ep.loss_sum / ep.seen
            row = loop.record(ep, {f"val_dice[{k}]": v for k, v in scores.items()}, opt.param_groups[0]["lr"])
            meta = {
                "threshold": 0.5,
                "postprocess": {"keep_components": 2, "min_component_fraction": 0.05, "fill_holes": True},
                "training": {"epoch": ep.number, "epochs": cfg.epochs, "seconds_training": round(seconds_training, 1),
                             "config": cfg.to_dict(), **data_meta},
                "validation_quick_dice": scores,
            }
            if score > best["score"]:
                best = {"epoch": ep.number, "score": score}
                save_segmenter(out / "best", model, meta)
            save_segmenter(out / "last", model, meta)
            dice_txt = "  ".join(f"{k}: {v:.4f}" for k, v in scores.items())
            loop.commit(ep, f"epoch {ep.number}/{cfg.epochs}  loss {row['train_loss']:.4f}  val Dice {dice_txt}  "
                            f"{row['seconds']:.0f}s  {row['images_per_s']:.1f} img/s")
    return history, best

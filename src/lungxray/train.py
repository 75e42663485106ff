"""The training loop: readable top to bottom.

A run folder holds config.json, split.csv, history.csv, best/last checkpoints (safetensors + JSON) and
`state.pt`, the single file `--resume` needs. state.pt is replaced atomically after every epoch, so a
crash or Ctrl-C at any moment leaves the last complete epoch resumable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__, runs
from .checkpoint import load_state, save_checkpoint, verify_state
from .devices import autocast_enabled, resolve_device
from .distributed import DistContext, init_from_env, shutdown
from .config import TrainConfig
from .data.api import SplitData, load_split
from .data.split import write_manifest
from .data.transforms import mixup, random_affine, random_intensity, shrink
from .errors import ConfigError
from .inference import check_masks, load_batch, predict_logits
from .models import Classifier, create_model
from .ood import guard_path
from .utils import output_lock, write_json

log = logging.getLogger(__name__)
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=0.0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.min_lr)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch)
    return None


def freeze_parts(model: Classifier, spec: str) -> list[torch.nn.Module]:
    """Stop training the parts of `model.body` named in `spec` (comma-separated module names, e.g. "encoder.0").

    Their parameters get requires_grad=False (so the optimiser never sees them); the modules are returned so
    that each epoch can put them back in eval mode after `model.train()` (batch-norm statistics stay as loaded).
    A name that is not a module of the body is an error that lists the top-level ones.
    """
    names = [n.strip() for n in spec.split(",") if n.strip()]
    modules = dict(model.body.named_modules())
    parts = []
    for name in names:
        if name not in modules:
            tops = ", ".join(n for n, _ in model.body.named_children())
            nested = sorted(n for n in modules if n.count(".") == 1)[:8]
            raise ConfigError(f"freeze: {model.name!r} has no part named {name!r} (its parts: {tops}; "
                              f"e.g. {', '.join(nested)})")
        parts.append(modules[name])
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(False)
    if parts and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"freeze={spec!r} leaves nothing to train")
    return parts


def l2_penalty(model: torch.nn.Module) -> torch.Tensor:
    """Sum of squared weights of conv/linear kernels (biases and the normalisation constants excluded)."""
    return sum((p.pow(2).sum() for n, p in model.named_parameters() if p.ndim > 1), torch.zeros(()))


def blended_loss(logits: torch.Tensor, y: torch.Tensor, y2: torch.Tensor, lam: float, weights: torch.Tensor | None,
                 label_smoothing: float) -> torch.Tensor:
    """Cross-entropy against `y`, blended with the one against `y2` by weight `lam` (mixup; lam = 1: plain)."""
    loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=label_smoothing)
    if lam < 1.0:
        loss = lam * loss + (1.0 - lam) * F.cross_entropy(logits, y2, weight=weights, label_smoothing=label_smoothing)
    return loss


def class_weights(labels: np.ndarray, n: int) -> torch.Tensor:
    """Inverse-frequency weights from the *training* labels, mean 1."""
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n, 0.0)
    return torch.tensor(w, dtype=torch.float32)


def train(
    cfg: TrainConfig,
    data: str | Path,
    out: str | Path,
    split_csv: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    force: bool = False,
    keep_epochs: bool = False,
    given: Iterable[str] | None = None,
) -> Path:
    """Train `cfg.model` on the train split, select and early-stop on the validation split.

    Args:
        cfg: validated TrainConfig.
        data: dataset folder (or a parent of it).
        out: run folder to create (or continue with `resume`).
        split_csv: manifest from `lungxray data split`; made on the fly (seeded) when None.
        force: with `resume`, continue even though the run's split or images changed since it started.
        keep_epochs: with `resume`, run to the epochs the run last had (its saved state) instead of `cfg.epochs`.
        given: with `resume`, the settings the caller chose (the CLI's flags); those that differ from the run's are
            named in a warning, since the run's own are used. None: every setting of `cfg`.
    Returns:
        The run folder.
    """
    out = Path(out)
    ctx = init_from_env(resolve_device(cfg.device))
    try:
        if not ctx.is_main:
            return _train(cfg, data, out, split_csv, resume, overwrite, False, cache_dir, ctx, force, keep_epochs, given)
        # One writer per run folder: a second `train --out` on the same folder is refused while this one runs.
        with output_lock(out, "train"):
            return _train(cfg, data, out, split_csv, resume, overwrite, progress, cache_dir, ctx, force, keep_epochs,
                          given)
    finally:
        shutdown(ctx)


def _train(cfg, data, out: Path, split_csv, resume, overwrite, progress, cache_dir, ctx: DistContext,
           force: bool = False, keep_epochs: bool = False, given: Iterable[str] | None = None) -> Path:
    inputs = [p for p in (data, split_csv) if p]
    split = None
    if not resume:
        # Everything that can fail runs before prepare_run_dir: with overwrite=True a bad setting, a mistyped split
        # or a data set without the masks asked for must not cost the old run.
        _check_early(cfg, (cfg.image_size, cfg.image_size))
        unused = cfg.unused_augmentation()
        if unused:
            log.warning("%s set, but augment = false: no geometric augmentation runs (set augment = true to use them)",
                        ", ".join(unused))
        if not cfg.augment and cfg.aug_intensity:
            log.warning("augment = false, but aug_intensity = %s: intensity augmentation still runs (it is its own "
                        "setting; set aug_intensity = 0 for none)", cfg.aug_intensity)
        if cfg.split_seed and split_csv is not None:
            raise ConfigError(f"split_seed={cfg.split_seed} draws a split made on the fly, but a manifest ({split_csv}) "
                              "already fixes it: leave split_seed out, or make another split with `lungxray data split "
                              "--seed N`")
        if cfg.per_class is not None and split_csv is not None:
            raise ConfigError(f"per_class={cfg.per_class} caps a split made on the fly, but a manifest ({split_csv}) "
                              "already fixes the images: make a capped one with `lungxray data split --per-class N`, "
                              "or leave per_class out")
        if ctx.is_main:
            runs.prepare_run_dir(out, resume, overwrite, inputs=inputs, check_only=True)
        _set_threads(cfg, ctx)
        split = _load_checked(cfg, data, split_csv, cache_dir, progress)
    if ctx.is_main:
        runs.prepare_run_dir(out, resume, overwrite, inputs=inputs)
    ctx.barrier()
    state = verify_state(load_state(out / runs.STATE), out / runs.STATE) if resume else None
    if state is not None:
        saved = TrainConfig(**state["config"])
        epochs = saved.epochs if keep_epochs else cfg.epochs
        ran, asked = saved.to_dict(), cfg.to_dict()
        ignored = [k for k in (asked if given is None else given) if k != "epochs" and k in ran and ran[k] != asked[k]]
        if ignored:
            log.warning("resume=True (--resume) continues with the run's saved settings; ignored now: %s",
                        ", ".join(f"{k} = {asked[k]!r} (the run has {ran[k]!r})" for k in sorted(ignored)))
        if epochs != saved.epochs and saved.scheduler in ("onecycle", "cosine"):
            raise ConfigError(f"{out}: its {saved.scheduler} learning-rate schedule was laid out for {saved.epochs} "
                              f"epochs and cannot be stretched to {epochs} on resume (the rate would jump or the "
                              f"schedule end early); resume with epochs={saved.epochs}, or start a new run")
        resumed = {**saved.to_dict(), "epochs": epochs}
        if resumed["optimizer"] == "adam" and resumed["weight_decay"]:
            # Adam never applied it (a run from before lungxray refused the pair): keep training as it did.
            log.warning("the run's config has weight_decay = %s with optimizer \"adam\", which never applied it; "
                        "resuming without it, as it trained", resumed["weight_decay"])
            resumed["weight_decay"] = 0.0
        cfg = TrainConfig(**resumed).validate()
        if split_csv is not None and Path(split_csv).resolve() != (out / "split.csv").resolve():
            log.warning("resume=True (--resume) continues on the run's own split (%s); split_csv=%s is not used",
                        out / "split.csv", split_csv)
        split_csv = out / "split.csv"
        if cfg.masks == "predicted":  # before the split loads: another U-Net would first re-segment every image
            _check_resumed_segmenter(state, out, force)
    if split is None:
        _set_threads(cfg, ctx)
        split = _load_checked(cfg, data, split_csv, cache_dir, progress)
    train_idx, val_idx = split.indices("train"), split.indices("val")
    saved_fp = (state or {}).get("data_fingerprint")
    if saved_fp and saved_fp != split.fingerprint and not force:
        raise ConfigError(f"{out}: the split or its images changed since this run started (data fingerprint {saved_fp}, "
                          f"now {split.fingerprint}); resuming would silently train on other data. Start a new run, "
                          "or pass force=True to continue anyway")
    labels = split.labels()
    if ctx.is_main:
        from .seen import RUN_FILE, write_seen_for_split

        if not resume:
            write_manifest(out / "split.csv", split.rows)
        # On resume (forced past changed data, too) the list grows by whatever this run now trains or validates on.
        write_seen_for_split(out / RUN_FILE, split, keep=resume)
        write_json(out / "config.json", cfg.to_dict())  # on resume: the settings it now runs with (epochs)

    device = resolve_device(cfg.device)
    # Forked RNG: seeding for reproducibility must not change the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, input_size=(cfg.image_size, cfg.image_size), classes=split.classes,
                             **cfg.model_args)
        pretrained = None
        if cfg.pretrained and state is None:  # on --resume the saved state holds the weights
            from .data.split import manifest_fingerprint
            from .models.pretrained import check_split, load_pretrained

            pretrained = load_pretrained(model, cfg.pretrained, cache_dir)
            check_split(pretrained, manifest_fingerprint(split.rows))
        segmenter = None
        if cfg.masks == "predicted":
            from .data.split import manifest_fingerprint
            from .models.pretrained import check_segmenter_split, segmenter_record

            segmenter = segmenter_record()
            check_segmenter_split(segmenter, manifest_fingerprint(split.rows))
        if cfg.freeze and not cfg.pretrained:
            log.warning("freeze=%s without pretrained weights: those parts stay at their random start", cfg.freeze)
        frozen = freeze_parts(model, cfg.freeze)
        model = model.to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return _fit(cfg, model, split, train_idx, val_idx, labels, out, state, progress, device, ctx, pretrained,
                    frozen, segmenter)


def _check_early(cfg, size: tuple[int, int]) -> None:
    """Build what training builds (the model with its arguments, frozen parts, optimizer, schedule, progressive
    resizing) once, and look up a `pretrained` file, before the run folder is prepared and the split loads: with
    overwrite a bad setting must not cost the old run, and a first run at a size caches every image (minutes)."""
    if cfg.pretrained:
        from .models.pretrained import check_source

        check_source(cfg.pretrained)
    with torch.random.fork_rng(devices=[]):  # a throwaway model must not move the caller's random state
        model = create_model(cfg.model, input_size=size, classes=cfg.classes, **cfg.model_args)
        if cfg.freeze:
            freeze_parts(model, cfg.freeze)
        _scheduler(cfg, _optimizer(cfg, model), steps_per_epoch=1)
        if cfg.low_res_size:
            _check_low_res(model, cfg, torch.device("cpu"))


def _fit(cfg, model: Classifier, split: SplitData, train_idx, val_idx, labels, out: Path, state, progress,
         device: torch.device, ctx: DistContext | None = None, pretrained: dict | None = None,
         frozen: tuple[torch.nn.Module, ...] | list[torch.nn.Module] = (), segmenter: dict | None = None) -> Path:
    ctx = ctx or DistContext()
    view = cfg.lung_view()
    use_amp = autocast_enabled(cfg.amp, device)
    steps_per_epoch = steps_in_epoch(len(train_idx), cfg.batch_size, ctx.world)
    opt = _optimizer(cfg, model)
    sched = _scheduler(cfg, opt, steps_per_epoch)
    weights = class_weights(labels[train_idx], len(split.classes)).to(device) if cfg.class_weighting else None
    history: list[dict] = []
    start_epoch, best_loss, bad_epochs = 1, float("inf"), 0
    ema = _ema_model(model, cfg.ema) if cfg.ema else None
    if state is not None:
        start_epoch = runs.restore_state(state, model, opt, sched, rank=ctx.rank, world=ctx.world)
        if ema is not None:
            if "ema" not in state:
                raise ConfigError(f"{out}/state.pt holds no weight average, but the run's config has ema = {cfg.ema}")
            ema.load_state_dict(state["ema"])
        history, best_loss, bad_epochs = state["history"], state["best_val_loss"], state["bad_epochs"]
        pretrained = state.get("pretrained")  # loaded before the first epoch; its report stays in the metadata
        log.info("resuming %s at epoch %d", out, start_epoch)
    if cfg.low_res_epochs:
        _check_low_res(model, cfg, device)
    net = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # torch.device("cuda") carries no index; the process's GPU is its local rank (set by init_from_env).
        net = DistributedDataParallel(model, device_ids=[ctx.local_rank] if device.type == "cuda" else None)
    base_meta = {
        "config": cfg.to_dict(),
        "masks": cfg.masks,
        **({"lung_view": view.to_dict()} if cfg.masks != "none" else {}),
        **({"pretrained": pretrained} if pretrained else {}),
        **({"segmenter": segmenter} if segmenter else {}),
        "data": {
            "fingerprint": split.fingerprint,
            "counts": {s: int(len(split.indices(s))) for s in ("train", "val", "test")},
            "split_file": "split.csv",
        },
    }

    def save_state(epoch: int, rank_rng: list[dict] | None = None) -> None:
        runs.save_state(out, model, rank_rng=rank_rng, epoch=epoch, **({"ema": ema.state_dict()} if ema is not None else {}),
                        data_fingerprint=split.fingerprint, optimizer=opt.state_dict(),
                        scheduler=sched.state_dict() if sched is not None else {}, history=history,
                        best_val_loss=best_loss, bad_epochs=bad_epochs, config=cfg.to_dict(), pretrained=pretrained,
                        segmenter=segmenter, version=__version__)

    if state is None and ctx.is_main:
        save_state(0)  # from here on a crash at any moment leaves a run that --resume can continue
    loop = runs.EpochLoop(out, cfg.epochs, cfg.seed, cfg.batch_size, history, save_state, progress,
                          f"`lungxray train --resume --out {out}` (Python: train(..., resume=True))",
                          columns=HISTORY_COLUMNS, writer=ctx.is_main, ctx=ctx)
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    try:
        with loop.interruptible():
            for ep in loop.epochs(start_epoch):
                if bad_epochs and cfg.early_stopping and bad_epochs >= cfg.early_stopping:
                    if ctx.is_main:
                        log.warning("stopped early before epoch %d of %d: no lower validation loss in the last %d "
                                    "epoch(s) (early_stopping = %d); a resumed run stops here too", ep.number,
                                    cfg.epochs, bad_epochs, cfg.early_stopping)
                    break
                model.train()
                if cfg.freeze_bn:
                    for part in frozen:
                        part.eval()  # frozen batch norms keep their loaded statistics
                lr_used = opt.param_groups[0]["lr"]
                # Progressive resizing: only the training forward passes of the early epochs take smaller images.
                model.strict_input_size = ep.number > cfg.low_res_epochs
                for idx in ep.batches(train_idx):
                    if not batch_takes_a_step(len(idx), ctx.world):
                        continue  # a tail too short to give every rank an image
                    # Built on the training device (on a GPU the lung view, augmentation and resizing run there); the
                    # draws still come from the epoch's CPU generator, so either device draws the same augmentation.
                    x = load_batch(split, idx, cfg.masks, view=view, device=device)
                    y = torch.from_numpy(labels[idx])
                    if cfg.augment:
                        x = random_affine(x, ep.gen, rotate=cfg.aug_rotate, shift=cfg.aug_shift, zoom=cfg.aug_zoom,
                                          shear=cfg.aug_shear, hflip=cfg.hflip)
                    if cfg.aug_intensity:
                        x = random_intensity(x, ep.gen, cfg.aug_intensity)
                    if ep.number <= cfg.low_res_epochs:
                        x = shrink(x, cfg.low_res_size)
                    lam, y2 = 1.0, y
                    if cfg.mixup:
                        x, partner, lam = mixup(x, ep.gen, cfg.mixup)
                        y2 = y[partner]
                    # Augmentation is drawn for the whole global batch on every rank, then each takes its share.
                    x, y = ctx.shard(x), ctx.shard(y).to(device)
                    y2 = ctx.shard(y2).to(device) if cfg.mixup else y
                    x = x.to(device, memory_format=memory)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        logits = net(x)
                        loss = blended_loss(logits.float(), y, y2, lam, weights, cfg.label_smoothing)
                    total = loss + cfg.l2 * l2_penalty(model) if cfg.l2 else loss
                    if ctx.enabled:
                        # DDP averages gradients over ranks; weighting by this rank's share makes that the
                        # gradient of the global-batch mean even when shares differ by one image.
                        total = total * (len(y) * ctx.world / len(idx))
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    lr_used = opt.param_groups[0]["lr"]  # what this step uses (one-cycle moves it after every step)
                    opt.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    if cfg.scheduler == "onecycle":
                        sched.step()
                    ep.add(loss.item(), len(y), int((logits.detach().argmax(1) == y).sum()))
                model.strict_input_size = True
                # Each rank scores its share of the validation split; sums are reduced so every rank agrees.
                my_val = ctx.shard(val_idx)
                scored = ema.module if ema is not None else model  # the weights that are checkpointed
                val_logits = torch.from_numpy(predict_logits(scored, split, my_val, cfg.masks,
                                                            batch_size=max(64, cfg.batch_size), view=view))
                y_val = torch.from_numpy(labels[my_val])
                v_loss_sum = float(F.cross_entropy(val_logits, y_val, reduction="sum")) if len(my_val) else 0.0
                v_correct = float((val_logits.argmax(1) == y_val).sum()) if len(my_val) else 0.0
                seen, loss_sum, correct, v_loss_sum, v_correct = ctx.sum(
                    [ep.seen, ep.loss_sum, ep.correct or 0, v_loss_sum, v_correct])
                val_loss, val_acc = v_loss_sum / len(val_idx), v_correct / len(val_idx)
                # The history shows the learning rate of the epoch's last step, not the one set for the step after it.
                row = loop.record(ep, {"val_loss": val_loss, "val_acc": val_acc}, lr_used,
                                  totals=(int(seen), loss_sum, int(correct)))
                if cfg.scheduler == "plateau":
                    sched.step(val_loss)
                elif cfg.scheduler == "cosine":
                    sched.step()
                meta = {**base_meta, "epoch": ep.number, "val_metrics": {"loss": val_loss, "accuracy": val_acc}}
                improved = val_loss < best_loss
                best_loss, bad_epochs = (val_loss, 0) if improved else (best_loss, bad_epochs + 1)
                if ctx.is_main:
                    if improved:
                        save_checkpoint(out / "best", scored, meta)
                        # OOD statistics of earlier best weights (a resumed run) would describe other features;
                        # calibration at the end fits new ones.
                        guard_path(out).unlink(missing_ok=True)
                    save_checkpoint(out / "last", scored, meta)
                loop.commit(ep, f"epoch {ep.number}/{cfg.epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.3f}  "
                                f"val_loss {val_loss:.4f}  val_acc {val_acc:.3f}  lr {lr_used:.2e}  "
                                f"{row['images_per_s']:.0f} img/s")
    finally:
        model.strict_input_size = True  # whatever ended the loop, the model takes only its own size again
    if ctx.is_main:
        if cfg.calibrate:
            from .calibrate import calibrate_run

            calibrate_run(out, split, val_idx, labels[val_idx], cfg.masks, progress=progress, device=device)
        _finish(out, model, history, best_loss)
    ctx.barrier()
    return out


def _check_resumed_segmenter(state: dict, out: Path, force: bool) -> None:
    """Refuse to resume a predicted-mask run with another lung U-Net (weights or mask settings) than it started with."""
    from .models.pretrained import segmenter_change

    change = segmenter_change(state.get("segmenter"))
    if change and not force:
        key, want, have = change
        raise ConfigError(f"{out}: its masks came from another lung U-Net ({key} {want[:12]}...) than the one "
                          f"installed now ({have[:12]}...); resuming would train its last epochs on other masks. "
                          "Resume with the lungxray version it started with, start a new run, or pass force=True to "
                          "continue anyway")


def steps_in_epoch(n_train: int, batch_size: int, world: int = 1) -> int:
    """Optimizer steps one epoch takes: the epoch loop skips a batch too short to give every rank an image
    (`batch_takes_a_step`), so it is not counted (or a one-cycle schedule would never reach its last steps)."""
    return sum(batch_takes_a_step(min(batch_size, n_train - start), world) for start in range(0, n_train, batch_size))


def batch_takes_a_step(n_images: int, world: int) -> bool:
    """Whether a batch of `n_images` is trained on: every rank needs at least one image."""
    return n_images >= world


def _set_threads(cfg: TrainConfig, ctx: DistContext) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif ctx.enabled and cfg.device != "cuda":
        # Ranks share the machine's cores: one rank per core avoids oversubscription (per node: LOCAL_WORLD_SIZE).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))))


def _load_checked(cfg: TrainConfig, data, split_csv, cache_dir, progress) -> SplitData:
    """The split's images (cached), refused when it has no train or validation image or lacks the masks asked for."""
    size = cfg.lung_view().image_size((cfg.image_size, cfg.image_size))  # read_size needs masks (TrainConfig.validate)
    split = load_split(data, split_csv, cfg.classes, size, seed=cfg.split_seed, per_class=cfg.per_class,
                       cache_dir=cache_dir, progress=progress, masks=cfg.masks)
    train_idx, val_idx = split.indices("train"), split.indices("val")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError("the split needs at least one readable train and one validation image")
    check_masks(split, np.concatenate([train_idx, val_idx]), cfg.masks)
    return split


def _check_low_res(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> None:
    """Fail before the first epoch when the network cannot take the smaller images of progressive resizing."""
    was_training = model.training
    model.eval()
    model.strict_input_size = False
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, cfg.low_res_size, cfg.low_res_size, device=device))
    except RuntimeError:
        raise ConfigError(f"low_res_size = {cfg.low_res_size}: model {cfg.model!r} only takes {cfg.image_size}-px "
                          "images; progressive resizing needs a fully convolutional model such as xrnet") from None
    finally:
        model.train(was_training)
        model.strict_input_size = True


def _ema_model(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """A copy of `model` whose weights (and batch-norm statistics) follow an exponential moving average."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _finish(out: Path, model: Classifier, history: list[dict], best_loss: float) -> None:
    from .report.layers import layer_table, plot_layer_table
    from .report.plots import plot_history

    if history:
        plot_history(history, out / "curves.png")
    rows = layer_table(model, (1, model.spec.in_channels, *model.spec.input_size))
    write_json(out / "layers.json", rows)
    n_params = sum(p.numel() for p in model.parameters())
    plot_layer_table(rows, out / "layers.png", title=f"{model.name} ({n_params:,} parameters)")
    best = min(history, key=lambda r: r["val_loss"]) if history else {}
    write_json(out / "summary.json", {
        "model": model.name,
        "parameters": n_params,
        "epochs_run": len(history),
        "train_seconds": round(sum(float(r["seconds"]) for r in history), 1),
        "best_epoch": best.get("epoch"),
        "best_val_loss": best_loss,
        "best_val_acc": best.get("val_acc"),
    })

"""Typed settings: TOML file -> dataclass -> CLI overrides -> written into the run folder."""

from __future__ import annotations

import difflib
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

MASK_MODES = ("none", "provided", "predicted")
SCHEDULERS = ("none", "plateau", "cosine", "onecycle")
OPTIMIZERS = ("adam", "adamw", "sgd")
Config = TypeVar("Config")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Saved as `config.json` in the run folder."""

    model: str = "cnn"
    model_args: dict = field(default_factory=dict)
    classes: list[str] = field(default_factory=lambda: ["COVID", "Normal", "Viral Pneumonia"])
    image_size: int = 256
    masks: str = "none"
    lung_crop: bool = False
    """With masks: crop each image to a square around its lungs before masking (see `preprocess.LungView`)."""
    lung_margin: float = 0.05
    """Margin around the lungs' box, as a fraction of its side (with lung_crop)."""
    mask_dilate: int = 0
    """Grow the lung mask by this many pixels (at the size images are read at: read_size, else image_size) before
    applying it."""
    read_size: int = 0
    """With lung_crop: read images and masks at this side (px) and crop the lungs from there to image_size: one
    resampling from a larger image instead of a second one of an image already shrunk to image_size, so a small
    input keeps more of the lungs' detail (0 = read at image_size)."""
    per_class: int | None = None
    batch_size: int = 32
    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW/SGD style); see `l2` for a penalty added to the loss."""
    l2: float = 0.0
    """L2 penalty coefficient: loss += l2 * sum(w^2) over weight tensors (as Keras' kernel_regularizer)."""
    scheduler: str = "none"
    plateau_factor: float = 0.1
    plateau_patience: int = 2
    min_lr: float = 1e-6
    early_stopping: int = 0
    """Stop after this many epochs without a lower validation loss (0 = never)."""
    augment: bool = False
    aug_rotate: float = 10.0
    aug_shift: float = 0.1
    aug_zoom: float = 0.1
    aug_shear: float = 0.1
    hflip: bool = False
    aug_intensity: float = 0.0
    """Strength of random gamma/contrast/brightness (0 = off)."""
    class_weighting: bool = False
    label_smoothing: float = 0.0
    mixup: float = 0.0
    """Mixup: blend each training batch with a shuffled copy of itself, weight from Beta(mixup, mixup) folded into
    [0.5, 1], and the loss with the two labels by the same weight (0 = off; e.g. 0.2)."""
    ema: float = 0.0
    """Exponential moving average of the weights, decay per optimiser step (0 = off; e.g. 0.998). When on, the
    averaged weights are the ones validated, checkpointed and shipped."""
    low_res_size: int = 0
    """Progressive resizing: train the first `low_res_epochs` epochs on images shrunk to this side (0 = off).
    Validation, calibration and inference always use image_size; the cheaper early epochs buy more epochs in the
    same time."""
    low_res_epochs: int = 0
    pretrained: str = ""
    """Start from these weights: a run folder, .safetensors or weights-only .pt/.pth file, "imagenet",
    "segmenter" (the shipped lung U-Net, for model lungenc), "lung-encoder" (the shipped U-Net encoder that left
    out the default split's validation and test images, for model lungenc) or "lung-encoder-128" (the same, trained
    at 128 px, also on the split's COVID and Normal training images: the shipped default's and the quick recipe's
    start); "" = random."""
    freeze: str = ""
    """Comma-separated parts of the network left as they start, e.g. "encoder.0,encoder.1" (names as in the run's
    layer table, without "body."): their weights get no gradient (and their batch-norm statistics stay as loaded
    unless `freeze_bn = false`). Meant for a pretrained start; "" = train everything."""
    freeze_bn: bool = True
    """With `freeze`: keep the frozen parts' batch-norm statistics as loaded (true), or let them follow the new
    images (false: those layers normalise each training batch by its own statistics and update their running ones;
    their weights stay fixed)."""
    calibrate: bool = True
    """Fit a softmax temperature on the validation split after training (stored in the checkpoint metadata)."""
    seed: int = 0
    split_seed: int = 0
    threads: int = 0
    """torch intra-op threads (0 = torch's default)."""
    device: str = "cpu"
    """cpu, cuda or auto (cuda when available)."""
    amp: bool = False
    """Mixed precision: bf16 autocast (CPU with AVX-512 BF16, or GPU); weights stay fp32."""
    channels_last: bool = True
    """NHWC memory layout: ~2x faster convolutions on CPU (oneDNN)."""

    def validate(self) -> "TrainConfig":
        _choice("masks", self.masks, MASK_MODES)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("batch_size", "epochs", "image_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ConfigError("image_size must be at least 16")
        for name in ("lr", "momentum", "weight_decay", "l2", "label_smoothing", "mixup", "min_lr", "plateau_factor",
                     "lung_margin", "aug_rotate", "aug_shift", "aug_zoom", "aug_shear", "aug_intensity", "ema"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                raise ConfigError(f"{name}={value!r}: must be a finite number")
            if float(value) < 0:
                raise ConfigError(f"{name}={value!r}: must be >= 0")
        if not float(self.label_smoothing) < 1:
            raise ConfigError(f"label_smoothing={self.label_smoothing!r}: must be below 1 (e.g. 0.05)")
        if not float(self.momentum) < 1:
            raise ConfigError(f"momentum={self.momentum!r}: must be below 1 (e.g. 0.9)")
        if not 0 < float(self.plateau_factor) < 1:
            raise ConfigError(f"plateau_factor={self.plateau_factor!r}: must be between 0 and 1 (the rate is multiplied by it)")
        for name in ("early_stopping", "plateau_patience", "threads", "seed", "split_seed", "low_res_size", "low_res_epochs",
                     "mask_dilate", "read_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r}: must be a whole number >= 0")
        if not isinstance(self.model_args, dict):
            raise ConfigError(f"model_args={self.model_args!r}: must be a table of the model's arguments, e.g. "
                              "model_args = {{ dropout = 0.2 }}")
        if not (isinstance(self.classes, list) and len(self.classes) >= 2 and all(isinstance(c, str) for c in self.classes)):
            raise ConfigError(f"classes={self.classes!r}: must be a list of at least two class names, e.g. "
                              "classes = [\"COVID\", \"Normal\"]")
        if not 0.0 <= float(self.ema) < 1.0:
            raise ConfigError(f"ema must be in [0, 1) (a decay per step, 0 = off), got {self.ema}")
        _choice("device", self.device, ("cpu", "cuda", "auto"))
        if bool(self.low_res_size) != bool(self.low_res_epochs):
            raise ConfigError("low_res_size and low_res_epochs go together: set both (or neither)")
        if self.low_res_size and not 16 <= int(self.low_res_size) < int(self.image_size):
            raise ConfigError(f"low_res_size must be at least 16 and below image_size ({self.image_size}), "
                              f"got {self.low_res_size}")
        if self.low_res_epochs and not 0 < int(self.low_res_epochs) < int(self.epochs):
            raise ConfigError(f"low_res_epochs must be between 1 and epochs - 1 ({int(self.epochs) - 1}), "
                              f"got {self.low_res_epochs}")
        if self.optimizer == "adam" and float(self.weight_decay) > 0:
            raise ConfigError(f"weight_decay = {self.weight_decay} is not used by optimizer \"adam\" (the original study's "
                              "Adam had none): use optimizer = \"adamw\" for decoupled weight decay, or l2 = ... for the "
                              "study's L2 penalty")
        if self.masks == "none" and (self.lung_crop or self.mask_dilate):
            raise ConfigError("lung_crop and mask_dilate need lung masks: set masks = \"predicted\" (or \"provided\")")
        if self.read_size and not self.lung_crop:
            raise ConfigError("read_size needs lung_crop = true: only the lung crop resamples images to image_size")
        if self.read_size and not 16 <= int(self.read_size) <= 4096:
            raise ConfigError(f"read_size must be 0 (read at image_size) or from 16 to 4096 px, got {self.read_size}")
        if self.read_size and int(self.read_size) < int(self.image_size):
            raise ConfigError(f"read_size ({self.read_size}) is below image_size ({self.image_size}): a smaller read "
                              f"only loses detail; raise read_size to at least {self.image_size}, or set read_size = 0 "
                              "to read at image_size")
        try:
            self.lung_view()  # validates margin, dilation and read_size
        except ConfigError as exc:  # named as the config names them, not as LungView does
            raise ConfigError(str(exc).replace("lung_view.dilate", "mask_dilate").replace("lung_view.margin", "lung_margin")
                              .replace("lung_view.read_size", "read_size")) from None
        return self

    def unused_augmentation(self) -> list[str]:
        """Geometric augmentation settings changed from their defaults while `augment` is off (they then do nothing)."""
        if self.augment:
            return []
        return [k for k in ("hflip", "aug_rotate", "aug_shift", "aug_zoom", "aug_shear")
                if getattr(self, k) != getattr(TrainConfig, k)]

    def lung_view(self):
        """The `preprocess.LungView` these settings describe."""
        from .preprocess import LungView

        read = int(self.read_size)
        return LungView(crop=bool(self.lung_crop), margin=float(self.lung_margin), dilate=int(self.mask_dilate),
                        read_size=read, out_size=int(self.image_size) if read else 0)

    def to_dict(self) -> dict:
        return asdict(self)


SETTING_ALIASES = {
    "learning_rate": "lr", "wd": "weight_decay", "batch": "batch_size", "bs": "batch_size",
    "size": "image_size", "img_size": "image_size", "input_size": "image_size", "n_epochs": "epochs",
    "num_epochs": "epochs", "arch": "model", "architecture": "model", "lr_scheduler": "scheduler", "smoothing":
    "label_smoothing", "workers": "threads", "num_threads": "threads",
}
"""Names other tools use for a setting: the "did you mean" names ours instead of the nearest spelling (for
`learning_rate` that would be `aug_rotate`)."""


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(options)}.{hint}")


def _coerce(cfg_field, value: Any) -> Any:
    # TOML and the CLI give the right basic types already; we only need ints given as floats etc.
    t = cfg_field.type if isinstance(cfg_field.type, str) else getattr(cfg_field.type, "__name__", "")
    if value is None:
        return None
    try:
        if t == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if t == "float":
            return float(value)
        if t == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if t == "int | None":
            return None if value in ("", "none", "None", 0) else int(value)
        if t == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{cfg_field.name}: cannot use {value!r} (expected {t})") from None
    return value


def merge_config(base: Config, values: dict) -> Config:
    """Return a copy of `base` (a TrainConfig, or any settings dataclass such as the segmenter's) updated with
    `values`, each coerced to its field's type; unknown keys fail with the nearest valid key suggested."""
    known = {f.name: f for f in fields(base)}
    out = type(base)(**asdict(base))
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in known:
            alias = SETTING_ALIASES.get(key)
            close = [alias] if alias in known else difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown setting {key!r}.{hint}")
        setattr(out, key, _coerce(known[key], value))
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """Defaults <- TOML file (flat keys, or a [train] table) <- overrides (CLI). Validated."""
    cfg = TrainConfig()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML ({exc})") from None
        # Documentation keys: what the config reproduces and the figure its source reported.
        doc.pop("description", None)
        doc.pop("reference", None)
        if "train" in doc:
            outside = sorted(k for k in doc if k != "train")
            if outside:
                raise ConfigError(f"{p}: settings outside its [train] table would be ignored ({', '.join(outside)}): "
                                  "put every setting in [train], or use no table at all")
            doc = doc["train"]
        cfg = merge_config(cfg, doc)
    if overrides:
        cfg = merge_config(cfg, {k: v for k, v in overrides.items() if v is not None})
    return cfg.validate()

"""Model registry: one decorator registers a builder, `create_model(name, ...)` builds any model.

Every model is wrapped in `Classifier`, which carries its own class names and input spec and takes
images in [0, 1] (normalisation happens inside, so exported models and the server need no extra step).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from .. import DEFAULT_CLASSES
from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects as input. Written into every checkpoint's metadata."""

    name: str
    input_size: tuple[int, int] = (256, 256)
    in_channels: int = 1
    mean: float = 0.5
    std: float = 0.25
    expects_masked: bool = False
    description: str = ""
    cam_layer: str | None = None
    """Dotted module name (inside the Classifier) of the last convolutional block, for Grad-CAM."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


@dataclass
class _Entry:
    builder: Callable[..., nn.Module]
    spec: ModelSpec
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, **spec_kwargs) -> Callable:
    """Decorator: register `builder(num_classes, input_size, **kwargs) -> nn.Module` under `name`."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = _Entry(fn, ModelSpec(name=name, description=(fn.__doc__ or "").strip().split("\n")[0], **spec_kwargs))
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    return _entry(name).spec


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}.{hint}")
    return _REGISTRY[name]


class Classifier(nn.Module):
    """A registered network plus what it needs to be used correctly: classes, input spec, arguments."""

    def __init__(self, body: nn.Module, spec: ModelSpec, classes: tuple[str, ...], model_args: dict):
        super().__init__()
        self.body = body
        self.spec = spec
        self.classes = tuple(classes)
        self.model_args = dict(model_args)
        self.register_buffer("_mean", torch.tensor(spec.mean), persistent=False)
        self.register_buffer("_std", torch.tensor(spec.std), persistent=False)
        self.strict_input_size = True
        """Refuse inputs of another size than the spec's (training turns it off for progressive resizing)."""

    @property
    def name(self) -> str:
        return self.spec.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images `x` of shape (N, C, H, W) with intensities in [0, 1]."""
        if not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()):
            wrong_size = self.strict_input_size and tuple(x.shape[-2:]) != tuple(self.spec.input_size)
            if x.ndim != 4 or x.shape[1] != self.spec.in_channels or wrong_size:
                raise ValueError(
                    f"{self.spec.name} expects input (N, {self.spec.in_channels}, {self.spec.input_size[0]}, "
                    f"{self.spec.input_size[1]}) in [0, 1], got {tuple(x.shape)}"
                )
        return self.body((x - self._mean) / self._std)


def create_model(
    name: str,
    num_classes: int | None = None,
    input_size: tuple[int, int] | list[int] | int | None = None,
    classes: tuple[str, ...] | list[str] | None = None,
    **kwargs,
) -> Classifier:
    """Build a registered model.

    Args:
        name: registry name (see `list_models()`).
        num_classes: number of outputs; defaults to len(classes).
        input_size: (H, W) or an int; defaults to the model's spec.
        classes: class names in output order; default COVID, Normal, Viral Pneumonia.
        **kwargs: builder arguments (e.g. dropout, width).
    """
    entry = _entry(name)
    classes = tuple(classes) if classes else tuple(DEFAULT_CLASSES)
    if num_classes is None:
        num_classes = len(classes)
    if num_classes != len(classes):
        raise ConfigError(f"num_classes={num_classes} but {len(classes)} class names given")
    if input_size is None:
        size = entry.spec.input_size
    elif isinstance(input_size, int):
        size = (input_size, input_size)
    else:
        size = (int(input_size[0]), int(input_size[1]))
    if min(size) < 16:
        raise ConfigError(f"input size {size} is too small (>= 16 pixels)")
    args = {**entry.defaults, **kwargs}
    try:
        body = entry.builder(num_classes=num_classes, input_size=size, **args)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for model {name!r}: {exc}") from None
    return Classifier(body, replace(entry.spec, input_size=size), classes, args)

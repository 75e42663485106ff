"""The original study's networks, rebuilt faithfully in PyTorch (its five-model ladder uses two of them)."""

from __future__ import annotations

from torch import nn

from .registry import register_model


@register_model("mlp")
def mlp(num_classes: int, input_size: tuple[int, int], hidden: tuple[int, ...] = (512, 256, 128), dropout: float = 0.5) -> nn.Module:
    """Dense baseline: flattened image -> 512 -> 256 -> 128 (ReLU, dropout) -> classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_size[0] * input_size[1]
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register_model("cnn", cam_layer="body.0.7")
def cnn(
    num_classes: int,
    input_size: tuple[int, int],
    channels: tuple[int, ...] = (32, 64, 128),
    dense: tuple[int, ...] = (128, 64),
    dropout: float = 0.5,
) -> nn.Module:
    """Small CNN: conv 32 -> 64 -> 128 (3x3 same, ReLU, 2x2 max-pool) -> dense 128 -> 64 -> classes."""
    feats: list[nn.Module] = []
    cin = 1
    for c in channels:
        feats += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        cin = c
    h, w = input_size[0] >> len(channels), input_size[1] >> len(channels)
    head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
    width = cin * h * w
    for d in dense:
        head += [nn.Linear(width, d), nn.ReLU(), nn.Dropout(dropout)]
        width = d
    head.append(nn.Linear(width, num_classes))
    return nn.Sequential(nn.Sequential(*feats), nn.Sequential(*head))

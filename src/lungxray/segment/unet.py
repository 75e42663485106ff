"""The lung U-Net's layers, laid out exactly as MONAI's `UNet` (2-D, residual units) lays them out.

Why not import MONAI's class: importing anything from MONAI imports all of MONAI (its package `__init__`
loads every subpackage), which took longer than importing torch itself (docs/RESULTS.md, issue 14), and
prediction needs only these few layers. The module tree and parameter names are MONAI's, so weights move
between the two unchanged; `tests/segment/test_unet.py` checks that both give identical outputs.
"""

from __future__ import annotations

import torch
from torch import nn

NORM_LAYERS = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}


def _conv(cin: int, cout: int, stride: int, norm: str, dropout: float, conv_only: bool = False,
          transposed: bool = False) -> nn.Sequential:
    """MONAI's `Convolution`: a 3x3 convolution ("conv"), then norm, dropout and PReLU ("adn", in that order)."""
    unit = nn.Sequential()
    if transposed:
        unit.add_module("conv", nn.ConvTranspose2d(cin, cout, 3, stride, padding=1, output_padding=stride - 1))
    else:
        unit.add_module("conv", nn.Conv2d(cin, cout, 3, stride, padding=1))
    if not conv_only:
        adn = nn.Sequential()
        adn.add_module("N", NORM_LAYERS[norm](cout))
        adn.add_module("D", nn.Dropout(dropout))
        adn.add_module("A", nn.PReLU())
        unit.add_module("adn", adn)
    return unit


class ResidualUnit(nn.Module):
    """MONAI's `ResidualUnit`: `subunits` convolutions ("conv.unit0", ...) plus a projected shortcut ("residual")."""

    def __init__(self, cin: int, cout: int, stride: int, subunits: int, norm: str, dropout: float,
                 last_conv_only: bool = False):
        super().__init__()
        self.conv = nn.Sequential()
        channels, s = cin, stride
        for k in range(max(1, subunits)):
            self.conv.add_module(f"unit{k}", _conv(channels, cout, s, norm, dropout,
                                                   conv_only=last_conv_only and k == max(1, subunits) - 1))
            channels, s = cout, 1
        self.residual: nn.Module = nn.Identity()
        if stride != 1:
            self.residual = nn.Conv2d(cin, cout, 3, stride, padding=1)
        elif cin != cout:
            self.residual = nn.Conv2d(cin, cout, 1, 1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.residual(x)


class SkipConnection(nn.Module):
    """Concatenate the input with what the deeper levels ("submodule") make of it, along channels."""

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


class UNet(nn.Module):
    """A 2-D U-Net, 1 channel in, 1 logit out; the arguments mean what they mean for MONAI's `UNet`."""

    def __init__(self, channels, strides, num_res_units: int, norm: str, dropout: float):
        super().__init__()
        if norm not in NORM_LAYERS:
            raise ValueError(f"norm must be one of {tuple(NORM_LAYERS)}, got {norm!r}")
        self.num_res_units, self.norm, self.dropout = int(num_res_units), norm, float(dropout)
        self.model = self._level(1, 1, list(channels), list(strides), top=True)

    def _down(self, cin: int, cout: int, stride: int) -> nn.Module:
        if self.num_res_units > 0:
            return ResidualUnit(cin, cout, stride, self.num_res_units, self.norm, self.dropout)
        return _conv(cin, cout, stride, self.norm, self.dropout)

    def _up(self, cin: int, cout: int, stride: int, top: bool) -> nn.Module:
        conv = _conv(cin, cout, stride, self.norm, self.dropout, conv_only=top and self.num_res_units == 0,
                     transposed=True)
        if self.num_res_units == 0:
            return conv
        return nn.Sequential(conv, ResidualUnit(cout, cout, 1, 1, self.norm, self.dropout, last_conv_only=top))

    def _level(self, cin: int, cout: int, channels: list[int], strides: list[int], top: bool) -> nn.Sequential:
        c, s = channels[0], strides[0]
        if len(channels) > 2:
            deeper, up_in = self._level(c, c, channels[1:], strides[1:], top=False), 2 * c
        else:
            deeper, up_in = self._down(c, channels[1], 1), c + channels[1]  # the bottleneck
        return nn.Sequential(self._down(cin, c, s), SkipConnection(deeper), self._up(up_in, cout, s, top))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

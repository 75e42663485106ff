"""LungEnc: the lung U-Net's encoder with a classification head, so training can start from segmentation weights.

Why: no ImageNet or chest X-ray weights can be downloaded where lungxray is trained, and the only pretrained
networks on hand are lung U-Nets (trained to outline lungs, never shown a class label). The encoder levels are
laid out exactly as `segment/unet.py` lays them out (MONAI's residual units, batch norm), so `pretrained = RUN`
(a `segment train` run) or `"segmenter"` (the shipped U-Net) copies them in by name (`models/pretrained.py` maps
the U-Net's nested names to `encoder.K`). The shipped default starts from a U-Net trained with `--exclude-split`,
which kept it away from the classifier's validation and test images (see `check_split`). The head is global
average pooling, dropout and one linear layer, as in XRNet.
"""

from __future__ import annotations

from torch import nn

from ..segment.unet import ResidualUnit
from .registry import register_model


class LungEnc(nn.Module):
    def __init__(self, num_classes: int, channels=(16, 32, 64, 128, 256), num_res_units: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        levels, cin = [], 1
        for k, c in enumerate(channels):
            # As in the U-Net: every level but the bottleneck halves the resolution (features at 1/16).
            stride = 2 if k < len(channels) - 1 else 1
            levels.append(ResidualUnit(cin, c, stride, num_res_units, "batch", 0.0))
            cin = c
        self.encoder = nn.Sequential(*levels)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.encoder(x))


@register_model("lungenc", input_size=(224, 224), cam_layer="body.encoder.4")
def lungenc(num_classes: int, input_size: tuple[int, int], **kwargs) -> nn.Module:
    """The lung U-Net's encoder (16-32-64-128-256, residual units) with a linear head, to start from a lung U-Net's weights."""
    return LungEnc(num_classes, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})

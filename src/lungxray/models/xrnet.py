"""XRNet: a compact residual network with squeeze-excitation, sized for training on a laptop CPU.

Why this shape: a stride-2 stem and early downsampling keep the expensive full-resolution layers thin;
residual stages with BatchNorm train fast and stably from scratch; squeeze-excitation (laid out as MONAI's
`ChannelSELayer`, without importing MONAI: see `SqueezeExcitation`) adds global context for a few thousand parameters; global average pooling keeps
the head tiny (so the weights ship in a few MB) and makes Grad-CAM on the last stage meaningful.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class SqueezeExcitation(nn.Module):
    """Channel squeeze-excitation with MONAI `ChannelSELayer`'s parameter names ("fc.0", "fc.2").

    Written out because importing MONAI costs more than importing torch, and prediction needs nothing else from
    it; `tests/models/test_xrnet_se.py` checks it against MONAI's layer.
    """

    def __init__(self, channels: int, r: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // r), nn.ReLU(inplace=True),
                                nn.Linear(channels // r, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


class _Block(nn.Module):
    """Basic residual block (two 3x3 convolutions) with squeeze-excitation on the residual branch."""

    def __init__(self, cin: int, cout: int, stride: int, se: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcitation(cout, r=4) if se else nn.Identity()
        self.act = nn.ReLU()
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return self.act(y + self.skip(x))


class XRNet(nn.Module):
    def __init__(self, num_classes: int, widths=(24, 48, 96, 192), depths=(1, 2, 2, 2), stem: int = 24,
                 se: bool = True, dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 5, 2, 2, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        stages = []
        cin = stem
        for w, d in zip(widths, depths):
            # Every stage halves the resolution in its first block: stem /2, stages /16 -> features at 1/32.
            blocks = [_Block(cin if k == 0 else w, w, 2 if k == 0 else 1, se) for k in range(d)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each residual branch: every block starts as identity, which trains faster.
        for m in self.modules():
            if isinstance(m, _Block):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


@register_model("xrnet", input_size=(192, 192), cam_layer="body.stages.3")
def xrnet(num_classes: int, input_size: tuple[int, int], **kwargs) -> nn.Module:
    """Compact SE-ResNet (24-48-96-192, BatchNorm) for CPU training from scratch."""
    return XRNet(num_classes, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})

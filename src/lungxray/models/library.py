"""Library architectures, for users with a GPU or ImageNet-pretrained weights (`--pretrained imagenet`).

Too heavy to train from scratch on two CPU cores (DenseNet-121 at 224 px: 5.5 GFLOPs per forward pass by
torch's FLOP counter, 13x XRNet's 0.43 at the same size), but of the family the dataset's authors used
(Chowdhury et al., IEEE Access 2020, used DenseNet201), so a natural comparison on a machine that can afford it.
"""

from __future__ import annotations

from torch import nn

from .registry import register_model


@register_model("densenet121", input_size=(224, 224), cam_layer="body.features.norm5")
def densenet121(num_classes: int, input_size: tuple[int, int], dropout: float = 0.0, **kwargs) -> nn.Module:
    """MONAI DenseNet-121 (grayscale input); ImageNet weights with --pretrained imagenet."""
    from monai.networks.nets import DenseNet121  # MONAI's import is slow: only when this model is built

    return DenseNet121(spatial_dims=2, in_channels=1, out_channels=num_classes, dropout_prob=dropout, **kwargs)

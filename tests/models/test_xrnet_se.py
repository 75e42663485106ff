"""xrnet's squeeze-excitation against MONAI's ChannelSELayer: same parameter names, same outputs."""

import torch
from monai.networks.blocks import ChannelSELayer

from lungxray.models.xrnet import SqueezeExcitation


def test_same_names_and_outputs_as_monai_channel_se():
    torch.manual_seed(0)
    reference, ours = ChannelSELayer(2, 12, r=4), SqueezeExcitation(12, r=4)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(3, 12, 9, 7)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
    # The gate is not a no-op: the layer rescales channels.
    assert not torch.allclose(ours(x), x)

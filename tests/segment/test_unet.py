"""lungxray's U-Net layers against MONAI's UNet: same parameter names, same outputs for the same weights."""

import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet as MonaiUNet
from safetensors.torch import load_file

from lungxray.segment.unet import UNet

WEIGHTS = Path(__file__).resolve().parents[2] / "src" / "lungxray" / "weights"


def _pair(channels, strides, num_res_units, norm, dropout=0.0):
    torch.manual_seed(0)
    reference = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=channels, strides=strides,
                          num_res_units=num_res_units, norm=norm, dropout=dropout)
    ours = UNet(channels, strides, num_res_units, norm, dropout)
    # Random statistics and PReLU slopes too, so a swapped layer or order cannot hide behind the defaults.
    state = {k: (torch.rand_like(v) + 0.5 if v.is_floating_point() else v) for k, v in reference.state_dict().items()}
    reference.load_state_dict(state)
    ours.load_state_dict(state)  # strict: the names and shapes are MONAI's
    return reference, ours


@pytest.mark.parametrize("channels, strides, units, norm", [
    ((4, 8, 16), (2, 2), 2, "batch"),
    ((4, 8, 16, 32), (2, 2, 2), 0, "batch"),
    ((4, 8), (2,), 1, "instance"),
    ((4, 8, 16), (2, 1), 3, "instance"),
])
def test_same_names_and_outputs_as_monai(channels, strides, units, norm):
    reference, ours = _pair(channels, strides, units, norm)
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.rand(2, 1, 32, 32)
    for train_mode in (False, True):
        reference.train(train_mode), ours.train(train_mode)
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)


def test_the_shipped_weights_load_into_both_and_agree():
    meta = json.loads((WEIGHTS / "lung-unet.json").read_text())
    args = meta["model_args"]
    reference, ours = _pair(args["channels"], args["strides"], args["num_res_units"], args["norm"], args["dropout"])
    state = {k[len("net."):]: v for k, v in load_file(WEIGHTS / "lung-unet.safetensors").items()}
    reference.load_state_dict(state), ours.load_state_dict(state)
    reference.eval(), ours.eval()
    x = torch.rand(1, 1, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)

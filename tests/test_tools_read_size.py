"""tools/read_size_check.py: the crop's share of the film and the Dice between two reads' masks are what they say."""

import numpy as np
import torch

from toolmod import load_tool

rs = load_tool("read_size_check")


def test_crop_share_is_the_grown_box_side_over_the_film_side():
    m = torch.zeros(2, 1, 100, 100)
    m[0, :, 30:70, 20:60] = 1  # a 40-px box: 0.4 of the side, 0.44 grown by 2 px
    m[1, :, :, :] = 1  # the whole film
    share = rs.crop_share(m, grow=2, margin=0.0)
    assert np.allclose(share, [0.44, 1.0], atol=1e-6)
    assert rs.crop_share(m, grow=0, margin=0.05)[0] == np.float32(0.4 * 1.1)


def test_dice_is_one_for_the_same_mask_at_two_sizes_and_drops_when_they_differ():
    small = torch.zeros(1, 1, 8, 8)
    small[..., 2:6, 2:6] = 1
    large = torch.nn.functional.interpolate(small, size=(24, 24), mode="nearest")
    assert rs.dice_after_resize(small, large)[0] == 1.0
    shifted = torch.roll(large, shifts=6, dims=3)  # two of the four columns move out of the small box
    assert abs(rs.dice_after_resize(small, shifted)[0] - 0.5) < 1e-6
    assert rs.dice_after_resize(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 24, 24))[0] == 1.0  # both empty: agree


def test_detail_is_zero_on_a_flat_view_and_ignores_the_black_outside():
    flat = torch.zeros(1, 1, 10, 10)
    flat[..., 2:8, 2:8] = 0.5  # a flat lung on black: its edge to the black is not detail
    assert rs.detail(flat)[0] == 0.0
    stripes = flat.clone()
    stripes[..., 2:8, 2:8:2] = 0.7
    assert rs.detail(stripes)[0] > 0.05

"""Dice, HD95 and mask post-processing on hand-made masks with known answers."""

import math

import numpy as np
import pytest

from lungxray.segment.metrics import dice, hd95, summarize
from lungxray.segment.postprocess import fill_holes, keep_largest_components, postprocess_mask


def _two_lungs(size=(64, 64)) -> np.ndarray:
    m = np.zeros(size, dtype=bool)
    m[10:50, 8:28] = True
    m[10:50, 36:56] = True
    return m


def test_dice_identical_is_one_and_disjoint_is_zero():
    a = _two_lungs()
    assert dice(a, a) == 1.0
    left = np.zeros_like(a)
    left[:, :32] = True
    assert dice(left, ~left) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0  # nothing to find, nothing found


def test_dice_partial_overlap():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :6] = True  # 60 pixels
    b[:, 4:] = True  # 60 pixels, 20 shared
    assert dice(a, b) == pytest.approx(2 * 20 / 120)
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, np.zeros((5, 5), bool))


@pytest.mark.parametrize("shift", [0, 2, 5])
def test_hd95_of_a_shifted_square_is_the_shift(shift):
    a = np.zeros((64, 64), bool)
    a[20:40, 20:40] = True
    assert hd95(a, np.roll(a, shift, axis=1)) == pytest.approx(shift)


def test_hd95_empty_cases():
    a = _two_lungs()
    empty = np.zeros_like(a)
    assert hd95(empty, empty) == 0.0
    assert math.isinf(hd95(empty, a))
    s = summarize([1.0, 3.0, math.inf])
    assert s["n"] == 3 and s["non_finite"] == 1 and s["mean"] == 2.0


def test_postprocess_removes_a_small_spurious_blob_and_keeps_both_lungs():
    lungs = _two_lungs()
    noisy = lungs.copy()
    noisy[55:58, 2:5] = True  # a 9-pixel blob outside the chest
    out = postprocess_mask(noisy)
    assert np.array_equal(out, lungs)


def test_postprocess_fills_a_hole():
    lungs = _two_lungs()
    holed = lungs.copy()
    holed[25:30, 14:20] = False  # an opacity the network called "not lung"
    assert np.array_equal(fill_holes(holed), lungs)
    assert np.array_equal(postprocess_mask(holed), lungs)


def test_second_component_dropped_when_far_smaller_than_the_first():
    # Both lungs merged into one region: the "second largest" region is a blob and must go.
    merged = np.zeros((64, 64), bool)
    merged[10:50, 8:56] = True
    blob = merged.copy()
    blob[55:58, 2:5] = True
    assert np.array_equal(keep_largest_components(blob), merged)
    assert not keep_largest_components(np.zeros((8, 8), bool)).any()


def test_monai_dice_ce_is_the_dice_plus_bce_it_replaced():
    # segment/train.py uses MONAI's DiceCELoss for a one-channel sigmoid output: it must equal Dice + BCE.
    import torch
    import torch.nn.functional as F
    from monai.losses import DiceCELoss, DiceLoss

    torch.manual_seed(0)
    logits, target = torch.randn(4, 1, 16, 16), (torch.rand(4, 1, 16, 16) > 0.6).float()
    expected = DiceLoss(sigmoid=True, batch=True)(logits, target) + F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(DiceCELoss(sigmoid=True, batch=True)(logits, target), expected)

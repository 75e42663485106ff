"""The lung view: what a lung-only model sees, and reading images larger than the model's input."""

import pytest
import torch
import torch.nn.functional as F

from lungxray.config import load_config
from lungxray.errors import ConfigError
from lungxray.preprocess import LungView, dilate_mask, lung_view, read_size


def _stripes(size: int, period: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, size, size) vertical stripes of `period` px inside a centred lung box of half the side."""
    cols = torch.arange(size)
    x = ((cols // (period // 2)) % 2).float().expand(size, size).clone()[None, None]
    m = torch.zeros(1, 1, size, size)
    m[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return x, m


def test_a_view_read_larger_keeps_the_detail_a_small_read_loses():
    # One-pixel stripes at 128 px: the lungs' box (64 px) cropped to a 64-px input keeps them; a 64-px read of
    # the same film has already averaged them to grey before the crop enlarges it.
    big, big_m = _stripes(128, 2)
    small = F.interpolate(big, size=(64, 64), mode="area")
    small_m = F.interpolate(big_m, size=(64, 64), mode="nearest")
    read_large = lung_view(big, big_m, LungView(crop=True, margin=0.0, read_size=128, out_size=64))
    read_small = lung_view(small, small_m, LungView(crop=True, margin=0.0))
    assert read_large.shape == read_small.shape == (1, 1, 64, 64)
    inner = (slice(None), slice(None), slice(8, 56), slice(8, 56))
    assert read_large[inner].std() > 0.4 and read_small[inner].std() < 0.05


@pytest.mark.parametrize("pixels", [1, 2, 4, 9, 16])
@pytest.mark.parametrize("shape", [(3, 1, 40, 40), (2, 1, 17, 64), (1, 1, 5, 3)])
def test_dilation_equals_a_square_max_filter(pixels, shape):
    mask = (torch.rand(shape, generator=torch.Generator().manual_seed(pixels)) > 0.9).float()
    k = 2 * pixels + 1
    rows = F.max_pool2d(mask, (1, k), stride=1, padding=(0, pixels))
    expected = F.max_pool2d(rows, (k, 1), stride=1, padding=(pixels, 0))
    got = dilate_mask(mask, pixels)
    assert got.dtype == mask.dtype and torch.equal(got, expected)


def test_read_size_is_stored_only_when_set_and_comes_back_with_the_input_size():
    assert "read_size" not in LungView(crop=True, dilate=4).to_dict()  # older runs compare equal
    view = LungView(crop=True, dilate=9, read_size=224, out_size=96)
    meta = {"image_size": [96, 96], "masks": "predicted", "lung_view": view.to_dict()}
    back = LungView.from_meta(meta)
    assert back == view and back.out_size == 96
    assert read_size(meta) == (224, 224)
    assert read_size({"image_size": [96, 96], "masks": "predicted", "lung_view": {"crop": True}}) == (96, 96)
    assert read_size({"image_size": [64, 64], "masks": "none"}) == (64, 64)


@pytest.mark.parametrize("settings, match", [
    ({"read_size": 128}, "read_size needs lung_crop"),
    ({"read_size": 64, "lung_crop": True}, r"read_size \(64\) is below image_size \(96\).*read_size = 0"),
    ({"read_size": 8, "lung_crop": True}, "from 16 to 4096"),
])
def test_read_size_settings_are_checked(settings, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, {"model": "cnn", "image_size": 96, "masks": "predicted", **settings})


def test_a_view_without_a_crop_refuses_images_of_another_size():
    with pytest.raises(ValueError, match="without a crop"):
        lung_view(torch.zeros(1, 1, 64, 64), torch.ones(1, 1, 64, 64), LungView(out_size=32))


def test_a_larger_read_needs_a_square_input_in_the_metadata():
    meta = {"image_size": [96, 128], "masks": "predicted", "lung_view": {"crop": True, "read_size": 224}}
    with pytest.raises(ConfigError, match="square image_size"):
        LungView.from_meta(meta)


def test_a_predictor_built_from_metadata_without_a_size_takes_the_models(untrained_checkpoint, tmp_path):
    from lungxray.checkpoint import load_checkpoint
    from lungxray.predict import Predictor

    model, meta = load_checkpoint(untrained_checkpoint(tmp_path / "cnn", masks="predicted"))
    bare = {k: v for k, v in meta.items() if k != "image_size"}
    bare["lung_view"] = {"crop": True, "read_size": 64}
    pred = Predictor(model, bare)
    assert pred.size == (32, 32) and pred.read_size == (64, 64) and pred.lung_view.out_size == 32

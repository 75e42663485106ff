"""The out-of-distribution guard inside the prediction pipeline."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lungxray.checkpoint import save_checkpoint
from lungxray.data.io import read_image, resize_image, to_uint8
from lungxray.models import create_model
from lungxray.ood import FeatureGuard, guard_path, layout_descriptor, penultimate_features
from lungxray.predict import Predictor

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
XRAYS = sorted(SAMPLE.glob("*/images/*.png"))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """An untrained cnn whose guard is fitted on the 30 sample X-rays (features of real radiographs)."""
    tmp = tmp_path_factory.mktemp("ood")
    torch.manual_seed(0)
    model = create_model("cnn", input_size=32).eval()
    stem = tmp / "classifier"
    save_checkpoint(stem, model, {"masks": "none"})
    x = torch.from_numpy(np.stack([to_uint8(resize_image(read_image(p), (32, 32))) for p in XRAYS])).float().div(255)
    feats = penultimate_features(model, x.unsqueeze(1))[0].numpy()
    # Thresholding on the training features themselves: a lenient guard, so what it flags is far out.
    guard = FeatureGuard.fit(feats, feats, quantile=1.0)
    guard.layout = FeatureGuard.fit(layout_descriptor(x), layout_descriptor(x), quantile=1.0)
    guard.save(guard_path(stem.with_suffix(".safetensors")))
    return stem.with_suffix(".safetensors")


def test_real_xrays_pass(guarded):
    pred = Predictor.load(guarded)
    results = list(pred.predict_paths(XRAYS[:6]))
    assert all(not r.ood["flagged"] for r in results)
    assert all(r.ood["distance"] is not None and r.ood["threshold"] > 0 for r in results)


def test_blank_noise_and_colour_inputs_are_flagged(guarded, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(tmp_path / "blank.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    checker = ((np.indices((64, 64)).sum(0) // 8) % 2 * 255).astype(np.uint8)
    Image.fromarray(checker).save(tmp_path / "checker.png")
    pred = Predictor.load(guarded)
    res = {Path(r.path).name: r for r in pred.predict_paths([tmp_path])}
    assert any("uniform" in s for s in res["blank.png"].ood["reasons"])
    assert any("colour" in s for s in res["photo.png"].ood["reasons"])
    assert res["checker.png"].ood["flagged"]
    assert "ood" in res["checker.png"].row()


def test_model_without_guard_reports_no_distance(tmp_path):
    model = create_model("cnn", input_size=32).eval()
    save_checkpoint(tmp_path / "m", model, {"masks": "none"})
    r = Predictor.load(tmp_path / "m.safetensors").predict_paths([XRAYS[0]])
    r = next(iter(r))
    assert r.ood["distance"] is None and r.ood["flagged"] is False


def test_rotated_inverted_and_upside_down_xrays_are_flagged_by_layout(guarded):
    pred = Predictor.load(guarded)
    for path in XRAYS[::5]:
        img = read_image(path)
        assert not pred.predict_array(img).ood["flagged"]
        for name, bad in (("rotated", np.rot90(img).copy()), ("upside down", img[::-1].copy()), ("negative", 1.0 - img)):
            ood = pred.predict_array(bad).ood
            assert ood["layout_distance"] > ood["layout_threshold"], (path.name, name)
            assert any("not laid out like a frontal chest X-ray" in r for r in ood["reasons"])

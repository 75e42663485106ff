"""A tiny U-Net trained for one epoch on the bundled sample runs end to end: train -> save -> load -> predict."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lungxray.data.io import read_image
from lungxray.errors import CheckpointError, ConfigError
from lungxray.segment import Segmenter, SegTrainConfig, train_segmenter
from lungxray.segment.model import LungUNet, save_segmenter

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
VP = SAMPLE / "Viral Pneumonia"


def _tiny(**kw) -> SegTrainConfig:
    base = {"image_size": 32, "channels": [4, 8, 16], "num_res_units": 1, "epochs": 1, "batch_size": 4}
    return SegTrainConfig.from_dict({**base, **kw})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "run"
    return train_segmenter(_tiny(), [], out, holdout_data=[VP], progress=False)


def test_run_folder_and_metadata(tiny_run):
    for name in ("config.json", "history.csv", "best.safetensors", "best.json", "last.safetensors", "last.json", "summary.json"):
        assert (tiny_run / name).is_file(), name
    meta = json.loads((tiny_run / "best.json").read_text())
    assert meta["format"].startswith("lungxray-segmenter/") and meta["version"]
    assert meta["input_size"] == [32, 32] and meta["model_args"]["channels"] == [4, 8, 16]
    (name, held), = meta["training"]["heldout"].items()
    assert held["files"] and all(f.startswith("images/") for f in held["files"])
    assert held["train_pairs"] + len(held["files"]) == 10
    v = meta["validation"][name]
    assert v["n"] == len(held["files"]) and 0.0 <= v["dice"]["mean"] <= 1.0 and "mean" in v["hd95"]
    assert meta["training"]["seconds_all_epochs"] >= 0 and len(meta["training"]["history"]) == 1
    assert not any("/work/" in s or s.startswith("/") for s in json.dumps(meta).split('"'))  # no machine paths


def test_load_and_predict_give_masks_of_the_input_size(tiny_run):
    seg = Segmenter.load(tiny_run)
    images = [read_image(VP / "images" / "Viral Pneumonia-1.png"), read_image(SAMPLE / "COVID" / "images" / "COVID-5.png"),
              np.random.default_rng(0).random((50, 70), dtype=np.float32)]
    masks = seg.predict(images)
    assert [m.shape for m in masks] == [im.shape for im in images]
    assert all(m.dtype == bool for m in masks)
    assert [m.shape for m in seg.predict(images, size=(256, 256))] == [(256, 256)] * 3
    stack = np.stack([images[0], images[0]])
    batch = seg.predict(stack)  # a stack (N, H, W) is a list of images too
    assert len(batch) == 2 and batch[0].dtype == bool
    assert np.array_equal(batch[0], masks[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        seg.predict([images[0] * 255])


def test_same_seed_same_weights_and_global_rng_untouched(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = train_segmenter(_tiny(), [VP], tmp_path / "a", progress=False)
    assert torch.equal(torch.rand(3), expected)
    b = train_segmenter(_tiny(), [VP], tmp_path / "b", progress=False)
    assert (a / "best.safetensors").read_bytes() == (b / "best.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train_segmenter(_tiny(), [VP], a, progress=False)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        SegTrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="divisible"):
        _tiny(image_size=30)


def test_missing_or_corrupt_weights_raise_checkpoint_error(tmp_path, tiny_run):
    with pytest.raises(CheckpointError, match="no segmentation weights"):
        Segmenter.load(tmp_path / "nothing.safetensors")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "best.safetensors").write_bytes(b"\x00" * 64)
    (bad / "best.json").write_text((tiny_run / "best.json").read_text())
    with pytest.raises(CheckpointError, match="corrupt"):
        Segmenter.load(bad)
    (bad / "best.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a lungxray segmentation model"):
        Segmenter.load(bad)
    # Weights of another architecture than the JSON describes.
    other = tmp_path / "other"
    save_segmenter(other, LungUNet((32, 32), channels=[4, 8]), {})
    meta = json.loads(other.with_suffix(".json").read_text())
    meta["model_args"]["channels"] = [4, 8, 16]
    meta["model_args"]["strides"] = [2, 2]
    other.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        Segmenter.load(other.with_suffix(".safetensors"))
    with pytest.raises(CheckpointError, match="pickled"):
        Segmenter.load(tmp_path / "model.pt")

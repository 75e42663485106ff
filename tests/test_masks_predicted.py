"""Training and evaluating on predicted lung masks (every image alike), and shipping a model."""

import json
from pathlib import Path

import numpy as np
import pytest

import lungxray.segment.inference as seg_inf
from lungxray.checkpoint import load_checkpoint, ship_checkpoint
from lungxray.config import load_config
from lungxray.data.api import load_split, split_dataset
from lungxray.errors import CheckpointError
from lungxray.evaluate import evaluate_run
from lungxray.train import train

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"


@pytest.fixture
def fake_segmenter(monkeypatch, tmp_path, stand_in_segmenter):
    weights = tmp_path / "lung-unet.safetensors"
    weights.write_bytes(b"stand-in weights for the cache key")
    monkeypatch.setattr(seg_inf, "default_segmenter_path", lambda: weights)
    seg = stand_in_segmenter("left-half")  # easy to tell from a provided mask in the cache
    monkeypatch.setattr(seg_inf.Segmenter, "load", classmethod(lambda cls, *a, **k: seg))
    return seg


def test_every_image_gets_a_predicted_mask_and_it_is_cached(fake_segmenter, tmp_path):
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    data = load_split(SAMPLE, tmp_path / "split.csv", size=(32, 32), progress=False, masks="predicted")
    assert (data.prepared.mask_rows >= 0).all()  # COVID and Normal too, not only the VP images with files
    m = np.asarray(data.prepared.masks[data.prepared.mask_rows[0]])
    assert m[:, :16].all() and not m[:, 16:].any()  # the segmenter's mask, not the provided one
    first = fake_segmenter.images
    assert first > 0
    load_split(SAMPLE, tmp_path / "split.csv", size=(32, 32), progress=False, masks="predicted")
    assert first > 0 and fake_segmenter.images == first  # second time from the cache


def test_train_and_evaluate_with_predicted_masks(fake_segmenter, tmp_path):
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "masks": "predicted"})
    run = train(cfg, SAMPLE, tmp_path / "run", tmp_path / "split.csv", progress=False)
    assert json.loads((run / "best.json").read_text())["masks"] == "predicted"
    m = evaluate_run(run, SAMPLE, "test", n_bootstrap=20, progress=False)
    assert m["masks"] == "predicted" and m["n"] == 6


def test_ship_copies_weights_metadata_and_refuses_to_overwrite(tmp_path):
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8})
    run = train(cfg, SAMPLE, tmp_path / "run", tmp_path / "split.csv", progress=False)
    written = ship_checkpoint(run, tmp_path / "weights" / "classifier")
    assert {p.name for p in written} >= {"classifier.safetensors", "classifier.json"}
    model, meta = load_checkpoint(tmp_path / "weights" / "classifier.safetensors")
    assert meta["model"] == "cnn"
    with pytest.raises(CheckpointError, match="overwrite=True"):
        ship_checkpoint(run, tmp_path / "weights" / "classifier")


def test_evaluate_with_provided_instead_of_predicted_masks(fake_segmenter, tmp_path):
    from lungxray.data.split import read_manifest, write_manifest
    from lungxray.errors import ConfigError

    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "masks": "predicted"})
    run = train(cfg, SAMPLE, tmp_path / "run", tmp_path / "split.csv", progress=False)
    vp = [r for r in read_manifest(tmp_path / "split.csv") if r.label == "Viral Pneumonia"]
    write_manifest(tmp_path / "vp.csv", vp)
    a = evaluate_run(run, SAMPLE, "test", tmp_path / "vp.csv", tmp_path / "a", masks="provided", n_bootstrap=10, progress=False)
    b = evaluate_run(run, SAMPLE, "test", tmp_path / "vp.csv", tmp_path / "b", masks="predicted", n_bootstrap=10, progress=False)
    assert a["masks"] == "provided" and b["masks"] == "predicted" and a["n"] == b["n"] == 2
    with pytest.raises(ConfigError, match="only the kind of mask"):
        evaluate_run(run, SAMPLE, "test", tmp_path / "vp.csv", tmp_path / "c", masks="none", progress=False)


def test_a_run_records_its_segmenter_and_a_different_one_is_told(fake_segmenter, tmp_path, caplog):
    """The masks a model learned from come from one lung U-Net; evaluating or predicting with another one warns."""
    import hashlib

    import lungxray

    weights = seg_inf.default_segmenter_path()
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "masks": "predicted"})
    with caplog.at_level("WARNING", logger="lungxray"):
        run = train(cfg, SAMPLE, tmp_path / "run", tmp_path / "split.csv", progress=False)
    assert "trained without --exclude-split" in caplog.text  # the stand-in has no JSON saying what it left out
    record = json.loads((run / "best.json").read_text())["segmenter"]
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    caplog.clear()
    with caplog.at_level("WARNING", logger="lungxray"):
        evaluate_run(run, SAMPLE, "test", out=tmp_path / "e1", n_bootstrap=10, progress=False)
    assert "another lung U-Net" not in caplog.text  # the same segmenter: silent

    weights.write_bytes(b"an updated lung U-Net")
    with caplog.at_level("WARNING", logger="lungxray"):
        evaluate_run(run, SAMPLE, "test", out=tmp_path / "e2", n_bootstrap=10, progress=False)
    assert "another lung U-Net" in caplog.text and record["sha256"][:12] in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="lungxray"):
        lungxray.load(run).predict(SAMPLE / "COVID" / "images" / "COVID-10.png")
    assert "another lung U-Net" in caplog.text


def test_a_segmenter_kept_from_this_split_is_not_warned_about(fake_segmenter, tmp_path, caplog):
    from lungxray.data.split import manifest_fingerprint, read_manifest

    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    fp = manifest_fingerprint(read_manifest(tmp_path / "split.csv"))
    weights = seg_inf.default_segmenter_path()
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "masks": "predicted"})
    for fingerprint, warned in ((fp, False), ("0123456789abcdef", True)):
        weights.with_suffix(".json").write_text(json.dumps(
            {"training": {"excluded_by_split": {"manifest": "x.csv", "fingerprint": fingerprint}}}))
        caplog.clear()
        with caplog.at_level("WARNING", logger="lungxray"):
            train(cfg, SAMPLE, tmp_path / f"run-{warned}", tmp_path / "split.csv", progress=False)
        assert ("left out the validation and test images of another split" in caplog.text) is warned
        assert "trained without --exclude-split" not in caplog.text


def test_metadata_with_a_malformed_segmenter_record_is_refused(tmp_path):
    from lungxray.checkpoint import validate_metadata

    meta = {"format": "lungxray-checkpoint/1", "model": "cnn", "classes": ["a", "b"], "image_size": [32, 32]}
    assert validate_metadata({**meta, "segmenter": {"sha256": "ab" * 32}}, "m")["segmenter"]
    with pytest.raises(CheckpointError, match="'segmenter'"):
        validate_metadata({**meta, "segmenter": {"sha256": "not a digest"}}, "m")


def test_resume_refuses_masks_from_another_lung_u_net(fake_segmenter, tmp_path):
    """An upgrade between the start and the resume of a run would train its last epochs on other masks."""
    from lungxray.errors import ConfigError

    weights = seg_inf.default_segmenter_path()
    weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.5}))
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "masks": "predicted"})
    run = train(cfg, SAMPLE, tmp_path / "run", tmp_path / "split.csv", progress=False)
    more = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 2, "batch_size": 8, "masks": "predicted"})
    weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.6}))  # the same weights, other masks
    segmented = fake_segmenter.images
    with pytest.raises(ConfigError, match="another lung U-Net"):
        train(more, SAMPLE, run, resume=True, progress=False)
    assert fake_segmenter.images == segmented  # refused before re-segmenting the data set
    weights.write_bytes(b"an updated lung U-Net")
    with pytest.raises(ConfigError, match="another lung U-Net"):
        train(more, SAMPLE, run, resume=True, progress=False)
    train(more, SAMPLE, run, resume=True, progress=False, force=True)  # said out loud, it continues
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_the_mask_cache_is_redrawn_when_the_u_nets_mask_settings_change(fake_segmenter, tmp_path):
    weights = seg_inf.default_segmenter_path()
    weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.5}))
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    load_split(SAMPLE, tmp_path / "split.csv", size=(32, 32), progress=False, masks="predicted",
               cache_dir=tmp_path / "cache")
    first = fake_segmenter.images
    load_split(SAMPLE, tmp_path / "split.csv", size=(32, 32), progress=False, masks="predicted",
               cache_dir=tmp_path / "cache")
    assert fake_segmenter.images == first  # cached
    weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.6, "training": {"note": "x"}}))
    load_split(SAMPLE, tmp_path / "split.csv", size=(32, 32), progress=False, masks="predicted",
               cache_dir=tmp_path / "cache")
    assert fake_segmenter.images == 2 * first  # drawn again, not the old masks


def test_a_model_that_reads_larger_is_read_at_that_size_everywhere(fake_segmenter, tmp_path):
    """read_size: training, evaluate and predict all read the images at 64 px and crop the lungs to the 32-px
    input, and give the same probabilities for the same file."""
    import csv

    from lungxray.predict import Predictor
    from lungxray.preprocess import read_size

    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "read_size": 64, "epochs": 1, "batch_size": 8,
                             "masks": "predicted", "lung_crop": True, "mask_dilate": 2})
    run = train(cfg, SAMPLE, tmp_path / "run", tmp_path / "split.csv", progress=False)
    meta = json.loads((run / "best.json").read_text())
    assert meta["lung_view"]["read_size"] == 64 and meta["image_size"] == [32, 32]
    assert read_size(meta) == (64, 64)
    assert fake_segmenter.sizes and set(fake_segmenter.sizes) == {(64, 64)}  # masks predicted on the 64-px read

    evaluate_run(run, SAMPLE, "test", n_bootstrap=10, out=tmp_path / "ev", progress=False)
    with open(tmp_path / "ev" / "predictions.csv") as fh:
        scored = {r["path"]: float(r["COVID"]) for r in csv.DictReader(fh)}
    pred = Predictor.load(run)
    assert pred.read_size == (64, 64) and pred.size == (32, 32)
    for path, p_covid in scored.items():
        got = pred.predict_paths([SAMPLE / path]).__next__().probabilities["COVID"]
        assert got == pytest.approx(p_covid, abs=1e-5), path

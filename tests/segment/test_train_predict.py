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
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
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


RESUME_CHILD = """
import sys, time
import lungxray.runs as runs
real = runs.save_state
def save_then_wait(out, model, **rest):
    real(out, model, **rest)
    if rest["epoch"] == 1:
        print("epoch 1 saved", flush=True)
        time.sleep(120)  # killed here, with -9
runs.save_state = save_then_wait
from lungxray.segment import SegTrainConfig, train_segmenter
cfg = SegTrainConfig.from_dict({"image_size": 32, "channels": [4, 8, 16], "num_res_units": 1, "epochs": 3,
                                "batch_size": 4})
train_segmenter(cfg, [], sys.argv[1], holdout_data=[sys.argv[2]], progress=False)
"""


def test_segment_train_resumes_after_kill_9_exactly(tmp_path):
    import signal
    import subprocess
    import sys

    from lungxray.runs import STATE

    full = train_segmenter(_tiny(epochs=3), [], tmp_path / "full", holdout_data=[VP], progress=False)
    part = tmp_path / "part"
    child = subprocess.Popen([sys.executable, "-c", RESUME_CHILD, str(part), str(VP)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "epoch 1 saved"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert (part / STATE).is_file() and not (part / "summary.json").exists()  # killed mid-run
    with pytest.raises(ConfigError, match="already holds a run"):
        train_segmenter(_tiny(epochs=3), [], part, holdout_data=[VP], progress=False)
    resumed = train_segmenter(_tiny(), [], part, holdout_data=[VP], progress=False, resume=True)  # its own config
    cols = lambda run: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
                        for r in json.loads((run / "best.json").read_text())["training"]["history"]]
    assert len(cols(resumed)) == 3 and cols(resumed) == cols(full)
    a, b = Segmenter.load(full).model.state_dict(), Segmenter.load(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_segment_resume_needs_a_run(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_segmenter(_tiny(), [], tmp_path / "none", holdout_data=[VP], progress=False, resume=True)


def test_exclude_split_leaves_out_a_classifiers_validation_and_test_images(tmp_path):
    names = sorted(p.name for p in (VP / "images").iterdir())
    held = names[:3]  # this classifier validates or tests on three of the sample's pairs
    manifest = tmp_path / "split.csv"
    lines = ["path,mask_path,label,split,group"]
    for k, name in enumerate(names):
        split = "val" if name == held[0] else "test" if name in held[1:] else "train"
        lines.append(f"Viral Pneumonia/images/{name},,Viral Pneumonia,{split},{k}")
    manifest.write_text("\n".join(lines) + "\n")
    run = train_segmenter(_tiny(exclude_split=str(manifest), holdout_frac=0.0), [VP], tmp_path / "run", progress=False)
    meta = json.loads((run / "best.json").read_text())["training"]
    assert meta["train_pairs"] == len(names) - 3
    assert meta["excluded_by_split"]["pairs"] == {"radiography-sample/Viral Pneumonia": 3}
    assert meta["excluded_by_split"]["manifest"] == "split.csv" and len(meta["excluded_by_split"]["fingerprint"]) == 16
    from lungxray.segment.data import find_pairs
    from lungxray.segment.train import SplitExclusion, _load_source

    cfg = _tiny(exclude_split=str(manifest))
    kept = _load_source(VP, (32, 32), cfg, False, SplitExclusion.read(manifest)).pairs
    assert sorted(Path(p.image).name for p in kept) == names[3:]  # exactly the held names are gone
    assert len(find_pairs(VP)) == len(names)
    from click.testing import CliRunner

    from lungxray.cli import main

    res = CliRunner().invoke(main, ["segment", "train", "--data", str(VP), "--exclude-split", str(manifest),
                                    "--image-size", "32", "--channels", "4,8,16",
                                    "--num-res-units", "1", "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    cli_meta = json.loads((tmp_path / "cli" / "best.json").read_text())["training"]
    assert cli_meta["train_pairs"] == len(names) - 3 and cli_meta["excluded_by_split"]["manifest"] == "split.csv"
    everything = tmp_path / "all.csv"
    everything.write_text("\n".join(lines[:1] + [ln.replace(",train,", ",test,") for ln in lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match="no such split manifest"):
        _tiny(exclude_split=str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="every pair is in the validation or test split"):
        train_segmenter(_tiny(exclude_split=str(everything)), [VP], tmp_path / "none", progress=False)


def test_exclude_split_data_also_leaves_out_copies_of_held_images_under_other_names(tmp_path, caplog):
    import shutil

    from PIL import Image

    from lungxray.segment.train import source_name

    names = sorted(p.name for p in (VP / "images").iterdir())
    held = {"Viral Pneumonia-1.png": "val", "Viral Pneumonia-249.png": "test"}
    assert "Viral Pneumonia-250.png" in names  # a copy of -249 in the sample, put in train by this (careless) manifest
    manifest = tmp_path / "split.csv"
    manifest.write_text("path,mask_path,label,split,group\n" + "".join(
        f"Viral Pneumonia/images/{n},,Viral Pneumonia,{held.get(n, 'train')},{k}\n" for k, n in enumerate(names)))
    other = tmp_path / "other"  # another source holding a re-export of a held image under its own name
    (other / "images").mkdir(parents=True), (other / "masks").mkdir()
    reexport = read_image(VP / "images" / "Viral Pneumonia-1.png")[6:-6, 4:-8] ** 0.8
    Image.fromarray((reexport * 255).astype(np.uint8)).save(other / "images" / "x1.png")
    shutil.copy(VP / "masks" / "Viral Pneumonia-1.png", other / "masks" / "x1.png")
    for k, src in ((2, "Viral Pneumonia-4.png"), (3, "Viral Pneumonia-2.png")):  # copies of training images: kept
        shutil.copy(VP / "images" / src, other / "images" / f"x{k}.png")
        shutil.copy(VP / "masks" / src, other / "masks" / f"x{k}.png")

    cfg = _tiny(image_size=128, holdout_frac=0.0, exclude_split=str(manifest), exclude_split_data=str(SAMPLE))
    run = train_segmenter(cfg, [VP, other], tmp_path / "run", progress=False)
    meta = json.loads((run / "best.json").read_text())["training"]
    vp, oth = source_name(VP), source_name(other)
    assert meta["excluded_by_split"]["pairs"] == {vp: 2, oth: 0}  # by name
    assert meta["excluded_by_split"]["copies"] == {vp: 1, oth: 1}  # by content: Viral Pneumonia-250 and x1
    assert meta["train_pairs"] == len(names) - 3 + 2
    with caplog.at_level("WARNING", logger="lungxray.segment.train"):
        by_name = train_segmenter(_tiny(image_size=128, holdout_frac=0.0, exclude_split=str(manifest)), [VP, other],
                                  tmp_path / "by-name", progress=False)
    by_name_meta = json.loads((by_name / "best.json").read_text())["training"]
    assert by_name_meta["train_pairs"] == len(names) - 2 + 3 and "copies" not in by_name_meta["excluded_by_split"]
    assert any("caught only with exclude_split_data" in r.getMessage() for r in caplog.records)

    with pytest.raises(ConfigError, match="give that too"):
        _tiny(image_size=128, exclude_split_data=str(SAMPLE))
    # A U-Net trained on smaller images is checked for copies at the detector's size: the same two are found.
    small = train_segmenter(_tiny(holdout_frac=0.0, exclude_split=str(manifest), exclude_split_data=str(SAMPLE)),
                            [VP, other], tmp_path / "small", progress=False)
    small_meta = json.loads((small / "best.json").read_text())["training"]
    assert small_meta["excluded_by_split"]["copies"] == {vp: 1, oth: 1} and small_meta["train_pairs"] == len(names) - 1
    with pytest.raises(ConfigError, match="val/test images are missing or unreadable there"):
        train_segmenter(_tiny(image_size=128, exclude_split=str(manifest), exclude_split_data=str(other)), [VP],
                        tmp_path / "wrong-root", progress=False)

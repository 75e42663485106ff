"""The three-line Python API (`lungxray.load().predict(x)`) and `lungxray.segment`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lungxray
from lungxray.errors import DatasetError, ImageReadError


@pytest.fixture(scope="module")
def model():
    return lungxray.load()


@pytest.fixture(scope="module")
def covid_png(sample_dir: Path) -> Path:
    return sample_dir / "COVID" / "images" / "COVID-9.png"  # a 224x224 RGB PNG with three equal channels


def test_every_input_kind_gives_the_same_probabilities(model, covid_png: Path) -> None:
    pil = Image.open(covid_png)
    rgb = np.asarray(pil.convert("RGB"))
    inputs = {
        "str": str(covid_png),
        "Path": covid_png,
        "PIL": pil,
        "numpy RGB uint8": rgb,
        "numpy gray uint8": rgb[:, :, 0].copy(),
        "numpy gray float": rgb[:, :, 0].astype(np.float32) / 255.0,
        "numpy gray uint16": rgb[:, :, 0].astype(np.uint16) * 257,
        "torch CHW": torch.from_numpy(rgb.copy()).permute(2, 0, 1),
        "torch 1HW float": torch.from_numpy(rgb[:, :, 0].astype(np.float32) / 255.0)[None],
        "bytes": covid_png.read_bytes(),
    }
    reference = model.predict(inputs["str"]).probabilities
    for kind, x in inputs.items():
        got = model.predict(x)
        assert got.prediction in model.classes
        for c in model.classes:
            assert got.probabilities[c] == pytest.approx(reference[c], abs=1e-6), kind


def test_a_list_gives_a_list_in_order(model, sample_dir: Path) -> None:
    paths = [sample_dir / "Normal" / "images" / "Normal-12.png", sample_dir / "COVID" / "images" / "COVID-9.png"]
    out = model.predict(paths)
    assert isinstance(out, list) and [Path(r.path).name for r in out] == ["Normal-12.png", "COVID-9.png"]
    # a single string is one path, never a sequence of characters
    assert not isinstance(model.predict(str(paths[0])), list)


def test_result_has_what_users_reach_for(model, covid_png: Path) -> None:
    r = model.predict(covid_png, cam=True)
    assert 0 <= r.probability <= 1 and abs(sum(r.probabilities.values()) - 1) < 1e-6
    assert r.probability == max(r.probabilities.values())
    assert set(r.ood) >= {"flagged", "reasons"}
    d = r.to_dict()
    assert d["prediction"] == r.prediction and d["probabilities"] == r.probabilities
    plain, with_cam = r.overlay(), r.overlay(cam=True)
    assert isinstance(plain, Image.Image) and with_cam.width > plain.width
    with pytest.raises(ValueError, match="cam=True"):
        model.predict(covid_png).overlay(cam=True)


@pytest.mark.parametrize(
    "bad, error, words",
    [
        ("no/such/file.png", DatasetError, "no such file"),
        (np.full((64, 64), 2.0, np.float32), ImageReadError, "in [0, 1]"),
        (np.zeros((2, 64, 64, 3), np.uint8), ImageReadError, "expected a 2-D grayscale or HxWx3"),
        (np.zeros((64, 64), np.int64), ImageReadError, "unsupported array type"),
        (object(), ImageReadError, "cannot read a object"),
        (b"not an image at all", Exception, "not a PNG"),
    ],
)
def test_bad_input_gets_a_clear_error(model, bad, error, words) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        model.predict(bad)


def test_inputs_that_used_to_slip_through(model, covid_png: Path, sample_dir: Path, tmp_path: Path) -> None:
    gray = np.asarray(Image.open(covid_png).convert("L"))
    reference = model.predict(covid_png).probabilities
    # A folder is not one picture: an error, not the first file's result.
    with pytest.raises(ImageReadError, match="is a folder"):
        model.predict(sample_dir / "COVID" / "images")
    # A PIL float image reads like the float array it holds (no stretch to its own min-max).
    dim = gray.astype(np.float32) / 255.0 * 0.5
    from_array, from_pil = model.predict(dim).probabilities, model.predict(Image.fromarray(dim, mode="F")).probabilities
    assert all(from_pil[c] == pytest.approx(from_array[c], abs=1e-6) for c in model.classes)
    with pytest.raises(ImageReadError, match=r"in \[0, 1\]"):
        model.predict(Image.fromarray(dim * 4, mode="F"))
    # bfloat16 / float16 tensors are read, not a TypeError (0.5-steps of 1/255 are exact in neither, so close only).
    half = model.predict(torch.from_numpy(gray.astype(np.float32) / 255.0).to(torch.bfloat16)).probabilities
    assert all(abs(half[c] - reference[c]) < 0.05 for c in model.classes)
    # 12-bit data in 16 bits (a DICOM's raw pixel_array) would read as black: refused, as array, PIL image and file.
    raw12 = (gray.astype(np.uint16) * 16)
    png12 = tmp_path / "raw12.png"
    Image.fromarray(raw12).save(png12)
    for x in (raw12, Image.fromarray(raw12), png12):
        with pytest.raises(ImageReadError, match="12 bits or fewer"):
            model.predict(x)
    # PIL images Pillow cannot convert, or that fail to load, give our error.
    with pytest.raises(ImageReadError, match="mode LAB"):
        model.predict(Image.new("LAB", (64, 64)))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(covid_png.read_bytes()[:2000])
    with pytest.raises(ImageReadError, match="cannot read this PIL image"):
        model.predict(Image.open(truncated))
    # A broken chunk makes Pillow raise SyntaxError while loading: our error too.
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 400), dtype=np.uint8)).save(noise)
    data = noise.read_bytes()
    second = data.index(b"IDAT", data.index(b"IDAT") + 4)
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[:second] + b"\0\0\0\0" + data[second + 4:])
    with pytest.raises(ImageReadError, match="cannot read this PIL image"):
        model.predict(Image.open(broken))
    # Any os.PathLike is a path (os.DirEntry from os.scandir here), read as the same file is.
    entry = next(e for e in os.scandir(covid_png.parent) if e.name == covid_png.name)
    assert model.predict(entry).probabilities == reference
    # Arrays and PIL images get the size limit files get; a path too long for the OS is an error, not a traceback.
    with pytest.raises(ImageReadError, match="more than"):
        model.predict(np.zeros((2, 20000), np.uint8))
    with pytest.raises(ImageReadError, match="more than"):
        model.predict(Image.new("L", (20000, 2)))
    with pytest.raises((ImageReadError, DatasetError)):
        model.predict("x" * 5000 + ".png")
    # In a list, a bad item is named by its position, bytes included.
    with pytest.raises(ImageReadError, match="<item 1>"):
        model.predict([covid_png.read_bytes(), b"junk"])


def test_a_colour_photo_is_flagged_whatever_pil_mode_it_comes_in(model) -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    for im in (photo, photo.convert("CMYK"), photo.convert("YCbCr")):
        r = model.predict(im)
        assert r.ood["flagged"] and any("colour" in reason for reason in r.ood["reasons"]), im.mode


def test_segment_returns_a_mask_of_the_input_size(covid_png: Path) -> None:
    mask = lungxray.segment(covid_png)
    assert mask.dtype == bool and mask.shape == (224, 224)
    assert 0.1 < mask.mean() < 0.6  # two lungs, not nothing and not everything
    masks = lungxray.segment([covid_png, Image.open(covid_png)])
    assert isinstance(masks, list) and np.array_equal(masks[0], masks[1])
    from lungxray.api import _shipped_segmenter

    assert _shipped_segmenter.cache_info().misses == 1  # three calls, one U-Net load


def test_the_readme_three_lines_run(covid_png: Path) -> None:
    import subprocess
    import sys

    code = f"import lungxray; print(lungxray.load().predict({str(covid_png)!r}).prediction)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("COVID", "Normal", "Viral Pneumonia")


def test_predict_twice_without_out_writes_two_folders(tmp_path: Path, covid_png: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from lungxray.cli import main

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(main, ["predict", str(covid_png), "--no-overlay"])
    second = runner.invoke(main, ["predict", str(covid_png), "--no-overlay"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "test_results/predictions.csv" in first.output and "test_results-2/predictions.csv" in second.output
    assert (tmp_path / "test_results" / "predictions.csv").is_file()
    assert (tmp_path / "test_results-2" / "predictions.csv").is_file()


def test_load_runs_a_checkpoint_in_onnx_runtime_and_agrees_with_torch(tiny_run, sample_dir):
    import lungxray

    image = sorted(sample_dir.glob("COVID/images/*.png"))[0]
    torch_result = lungxray.load(tiny_run).predict(image)
    onnx_result = lungxray.load(tiny_run, runtime="onnx").predict(image)
    assert onnx_result.prediction == torch_result.prediction
    for c, p in torch_result.probabilities.items():
        assert abs(onnx_result.probabilities[c] - p) < 1e-4


def test_an_unreadable_file_raises_once_without_warnings_on_the_side(model, tmp_path: Path, caplog) -> None:
    junk = tmp_path / "x.png"
    junk.write_bytes(b"junk")
    with caplog.at_level("WARNING", logger="lungxray"):
        with pytest.raises(ImageReadError, match="not a PNG, JPEG or DICOM"):
            model.predict(junk)
    assert "skipped" not in caplog.text  # the exception is the message; a library does not also print it


def test_the_model_says_the_size_it_reads_images_at(tmp_path, untrained_checkpoint):
    import json

    import lungxray

    plain = lungxray.load(untrained_checkpoint(tmp_path / "plain"))
    assert plain.describe()["read_size"] == plain.describe()["image_size"] == [32, 32] and "read=" not in repr(plain)
    weights = untrained_checkpoint(tmp_path / "larger", masks="predicted")
    meta = json.loads(weights.with_suffix(".json").read_text())
    meta["lung_view"] = {"crop": True, "margin": 0.05, "dilate": 2, "read_size": 64}
    weights.with_suffix(".json").write_text(json.dumps(meta))
    larger = lungxray.load(weights)
    assert larger.describe()["read_size"] == [64, 64] and "input=[32, 32] read=[64, 64]" in repr(larger)


def test_the_overlay_is_the_one_predict_writes(model, covid_png: Path, tmp_path: Path) -> None:
    from lungxray.predict import predict_to_folder

    res = predict_to_folder([covid_png], tmp_path / "out")  # the shipped model, as `model` is
    written = Image.open(tmp_path / "out" / res.rows[0]["overlay"])
    mine = model.predict(covid_png).overlay()
    assert np.array_equal(np.asarray(mine.convert("RGB")), np.asarray(written.convert("RGB")))  # footer names the model
    unnamed = model.predict(covid_png).overlay(model_label="")
    assert not np.array_equal(np.asarray(unnamed.convert("RGB")), np.asarray(written.convert("RGB")))

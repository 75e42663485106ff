"""`lungxray segment train|predict` and `lungxray data fill-masks` on the bundled sample, through the real CLI."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lungxray.cli import main
from lungxray.data.discovery import scan_dataset
from lungxray.segment.fill import fill_masks

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "radiography"
    shutil.copytree(SAMPLE, root)
    return root


def test_segment_train_then_predict_with_the_trained_run(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(main, ["segment", "train", "--holdout-data", str(SAMPLE / "Viral Pneumonia"), "--out", str(run),
                               "--image-size", "32", "--channels", "4,8,16", "--num-res-units", "1", "--epochs", "1",
                               "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert (run / "best.safetensors").is_file() and "run saved" in res.output
    image = SAMPLE / "COVID" / "images" / "COVID-5.png"
    res = runner.invoke(main, ["segment", "predict", str(image), "--out", str(tmp_path / "m"), "--weights", str(run)])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "m" / "COVID-5.png").size == Image.open(image).size
    res = runner.invoke(main, ["segment", "train", "--data", str(SAMPLE / "Viral Pneumonia"), "--out", str(run), "--epochs", "1"])
    assert res.exit_code == 2 and "already holds a run" in res.output


def test_segment_predict_writes_masks_and_overlays(tmp_path):
    images = [SAMPLE / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png", SAMPLE / "Normal" / "images" / "Normal-12.png"]
    out = tmp_path / "masks"
    res = CliRunner().invoke(main, ["segment", "predict", *map(str, images), "--out", str(out), "--overlay"])
    assert res.exit_code == 0, res.output
    for image in images:
        mask = Image.open(out / image.name)
        assert mask.mode == "L" and mask.size == Image.open(image).size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        ov = Image.open(out / f"{image.stem}_overlay.png")
        assert ov.mode == "RGB" and ov.size == mask.size
        rgb = np.asarray(ov)
        assert ((rgb[..., 0] == 255) & (rgb[..., 1] == 64)).any()  # the outline is drawn
    res = CliRunner().invoke(main, ["segment", "predict", str(images[0]), "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = CliRunner().invoke(main, ["segment", "predict", str(images[0]), "--out", str(out), "--size", "256", "--overwrite"])
    assert res.exit_code == 0 and Image.open(out / images[0].name).size == (256, 256)


def test_fill_masks_dry_run_writes_nothing(dataset):
    before = _files(dataset)
    res = CliRunner().invoke(main, ["data", "fill-masks", str(dataset), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert _files(dataset) == before
    assert res.output.count("would write") == 20
    assert "would write COVID/masks/COVID-5.png" in res.output
    assert "Viral Pneumonia/" not in res.output  # every Viral Pneumonia image already has its mask
    assert "20 mask(s) would be written, 10 image(s) already have one" in res.output


def test_fill_masks_writes_only_missing_masks_and_never_overwrites(dataset):
    before = _files(dataset)
    # A mask that exists for one COVID image (here a deliberate marker): it must survive untouched.
    marker = dataset / "COVID" / "masks" / "COVID-5.png"
    marker.parent.mkdir()
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(marker)
    marker_bytes = marker.read_bytes()

    res = CliRunner().invoke(main, ["data", "fill-masks", str(dataset)])
    assert res.exit_code == 0, res.output
    assert "wrote 19 mask(s)" in res.output and "11 existing" in res.output
    assert marker.read_bytes() == marker_bytes
    after = _files(dataset)
    assert {k: v for k, v in after.items() if k in before} == before  # no existing file changed
    new = sorted(set(after) - set(before))
    assert len(new) == 20 and all(k.split("/")[1] == "masks" for k in new)
    for key in new:
        if key == "COVID/masks/COVID-5.png":
            continue
        mask = Image.open(dataset / key)
        assert mask.mode == "L" and mask.size == (256, 256)
        arr = np.asarray(mask)
        assert set(np.unique(arr)) <= {0, 255} and 0.05 < (arr > 0).mean() < 0.7
    assert all(s.mask_path for s in scan_dataset(dataset).samples)  # the dataset is now uniformly masked
    again = fill_masks(dataset, dry_run=False, progress=False)
    assert again.planned == [] and again.written == [] and again.existing == 30

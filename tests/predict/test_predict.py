"""`lungxray predict` and the shared inference pipeline (`lungxray.predict.Predictor`).

A tiny CNN is trained once (32 px, one epoch) on the bundled sample; checkpoints that need no
training are saved from seeded, untrained models.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lungxray.checkpoint import load_checkpoint, save_checkpoint
from lungxray.cli import main
from lungxray.config import load_config
from lungxray.data.api import load_split
from lungxray.data.io import read_image, read_mask, resize_image, resize_mask, to_uint8
from lungxray.errors import CheckpointError, ConfigError, ImageReadError, LungxrayError
from lungxray.inference import predict_logits
from lungxray.metrics import softmax
from lungxray.models import create_model
from lungxray.predict import NOTICE, Predictor, discover_inputs, overlay_names, predict_to_folder
from lungxray.train import train

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
CLASSES = ["COVID", "Normal", "Viral Pneumonia"]
VP = SAMPLE / "Viral Pneumonia" / "images"


def _untrained(path_stem: Path, name: str = "cnn", masks: str = "none", seed: int = 0, **kw) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, input_size=32, **kw)
    return save_checkpoint(path_stem, model, {"masks": masks, "data": {"fingerprint": "untrained"}})


@pytest.fixture(scope="module")
def run(tmp_path_factory, _session_cache_dir) -> Path:
    """One epoch of the small CNN at 32x32 on the sample (its own seeded split, written to run/split.csv)."""
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8})
    return train(cfg, SAMPLE, tmp_path_factory.mktemp("predict") / "run", None, progress=False,
                 cache_dir=_session_cache_dir)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    return {
        "masked": _untrained(d / "masked", masks="provided"),
        "mlp": _untrained(d / "mlp", name="mlp", hidden=(8,)),
    }


def _copy(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


# ------------------------------------------------------------------------- the one pipeline = training
def test_predict_array_matches_training_preprocessing(run, _session_cache_dir):
    """Read -> resize -> uint8 -> /255 in the Predictor gives the logits training/evaluation compute on the cache."""
    model, meta = load_checkpoint(run)
    data = load_split(SAMPLE, run / "split.csv", meta["classes"], (32, 32), cache_dir=_session_cache_dir, progress=False)
    idx = data.indices("test")
    expected = predict_logits(model, data, idx, "none")
    pred = Predictor.load(run)
    files = [SAMPLE / data.rows[i].path for i in idx]
    for f, ref in zip(files, expected):
        r = pred.predict_array(read_image(f), name=f.name)
        np.testing.assert_allclose(r.logits, ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(list(r.probabilities.values()), softmax(ref, pred.temperature), atol=1e-6)
        assert r.prediction == CLASSES[int(np.argmax(ref))]
    streamed = list(pred.predict_paths(files, batch_size=4))  # batching must not change anything
    np.testing.assert_allclose([r.logits for r in streamed], expected, rtol=0, atol=1e-5)
    assert [r.path for r in streamed] == [str(f) for f in files]


def test_predict_array_validates_its_input(run):
    pred = Predictor.load(run)
    img = read_image(VP / "Viral Pneumonia-1.png")
    with pytest.raises(ImageReadError, match="divide 8-bit"):
        pred.predict_array(to_uint8(img))
    with pytest.raises(ImageReadError, match="2-D"):
        pred.predict_array(np.stack([img, img], axis=-1))
    with pytest.raises(ImageReadError, match=r"\[0, 1\]"):
        pred.predict_array(img * 2)


# ------------------------------------------------------------------------------------ CLI and outputs
def test_cli_prints_table_and_writes_csv_json_overlays(run, tmp_path):
    src = _copy([SAMPLE / "COVID" / "images" / "COVID-9.png", SAMPLE / "Normal" / "images" / "Normal-7.png"],
                tmp_path / "in" / "sub")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", str(tmp_path / "in"), "--model", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[0].split()
    assert header[:3] == ["file", "prediction", "prob."] and header[3:] == ["COVID", "Normal", "Viral", "Pneumonia"]
    assert "sub/COVID-9.png" in res.output and "sub/Normal-7.png" in res.output
    assert "not for clinical use" in res.output

    columns, rows = _rows(out / "predictions.csv")
    assert columns == ["path", "prediction", "probability", *CLASSES, "ood_flagged", "ood_reasons"]
    assert [Path(r["path"]).name for r in rows] == ["COVID-9.png", "Normal-7.png"]
    for r in rows:
        p = np.array([float(r[c]) for c in CLASSES])
        assert abs(p.sum() - 1) < 1e-5 and (p >= 0).all()
        assert r["prediction"] == CLASSES[int(p.argmax())] and float(r["probability"]) == pytest.approx(p.max())

    doc = json.loads((out / "predictions.json").read_text())
    meta = json.loads((run / "best.json").read_text())
    assert doc["model"]["name"] == "cnn" and doc["model"]["version"] == meta["version"]
    assert doc["model"]["data_fingerprint"] == meta["data"]["fingerprint"]
    assert doc["model"]["temperature"] == pytest.approx(meta["temperature"])
    assert [r["path"] for r in doc["rows"]] == [r["path"] for r in rows]
    for jr, cr in zip(doc["rows"], rows):
        assert jr["prediction"] == cr["prediction"]
        assert jr["provenance"]["notice"] == NOTICE and jr["provenance"]["model_card"] == "docs/MODEL_CARD.md"
        assert "intended_use" in jr["provenance"]
        assert (out / jr["overlay"]).is_file()
    # overlays mirror the inputs below the given folder
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["sub/COVID-9.png", "sub/Normal-7.png"]
    assert src.is_dir()


def test_existing_outputs_are_never_overwritten(run, tmp_path):
    src = _copy([VP / "Viral Pneumonia-1.png", VP / "Viral Pneumonia-2.png"], tmp_path / "in")
    out = tmp_path / "out"
    args = ["predict", str(src), "--model", str(run), "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    watched = [out / "Viral Pneumonia-1.png", out / "predictions.csv"]
    before = [(p.stat().st_mtime_ns, p.read_bytes()) for p in watched]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    assert "5 file(s)" in res.output and "--overwrite" in res.output and "Traceback" not in res.output  # 2 overlays, csv, json, index.html
    assert [(p.stat().st_mtime_ns, p.read_bytes()) for p in watched] == before
    # --no-overlay writes only the tables, but those exist too
    assert CliRunner().invoke(main, [*args, "--no-overlay"]).exit_code == 2
    res = CliRunner().invoke(main, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (out / "Viral Pneumonia-1.png").stat().st_mtime_ns >= before[0][0]


def test_folder_with_corrupt_and_text_files_predicts_the_rest(run, tmp_path, caplog):
    src = _copy([SAMPLE / "COVID" / "images" / "COVID-5.png", SAMPLE / "Normal" / "images" / "Normal-12.png"], tmp_path / "in")
    good = (SAMPLE / "Normal" / "images" / "Normal-13.png").read_bytes()
    (src / "broken.png").write_bytes(good[: len(good) // 3])  # truncated PNG
    (src / "scan.bin").write_text("not an image\n")  # could have been a DICOM without an extension: reported
    (src / "README.md").write_text("# my X-rays\n")  # a document beside the images: left out quietly
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="lungxray.predict"):
        res = predict_to_folder([src], out, run, overlays=False)
    assert sorted(Path(r["path"]).name for r in res.rows) == ["COVID-5.png", "Normal-12.png"]
    assert sorted(Path(p).name for p, _ in res.skipped) == ["broken.png", "scan.bin"]
    assert "broken.png" in caplog.text and "scan.bin" in caplog.text and "skipped 2 of 4" in caplog.text
    assert "README.md" not in caplog.text
    doc = json.loads((out / "predictions.json").read_text())
    assert sorted(Path(s["path"]).name for s in doc["skipped"]) == ["broken.png", "scan.bin"]
    assert len(_rows(out / "predictions.csv")[1]) == 2
    columns, skipped = _rows(out / "skipped.csv")  # the CSV reader sees the failures too, with their reasons
    assert columns == ["path", "error"] and sorted(Path(r["path"]).name for r in skipped) == ["broken.png", "scan.bin"]
    assert all(r["error"] for r in skipped)
    cli = CliRunner().invoke(main, ["predict", str(src), "--model", str(run), "--out", str(tmp_path / "o2")])
    assert cli.exit_code == 0 and "skipped 2 unreadable file(s) (listed in skipped.csv)" in cli.output
    # Replaced by a run that skips nothing, the folder keeps no list of the earlier run's failures.
    (src / "broken.png").unlink()
    (src / "scan.bin").unlink()
    predict_to_folder([src], out, run, overlays=False, overwrite=True)
    assert not (out / "skipped.csv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.png"], "no such file or folder"),
        (["{tmp}/empty"], "no files found"),
        (["{tmp}/textonly"], "documents such as README.md or .txt are not inputs"),
        (["{tmp}/textonly/a.txt"], "none of the 1 file(s) could be read"),  # named, so it is tried
        (["{sample}", "--model", "{tmp}/textonly/a.txt"], "give a run folder or a .safetensors file"),
        (["{sample}", "--model", "{tmp}/empty"], "no checkpoint found"),
    ],
)
def test_bad_input_is_a_one_line_error(run, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "textonly").mkdir()
    (tmp_path / "textonly" / "a.txt").write_text("hello")
    argv = [a.format(tmp=tmp_path, sample=VP / "Viral Pneumonia-1.png") for a in args]
    if "--model" not in argv:
        argv += ["--model", str(run)]
    res = CliRunner().invoke(main, ["predict", *argv, "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_missing_default_model_says_how_to_get_one(monkeypatch, tmp_path):
    import lungxray.predict.predictor as predictor_mod

    monkeypatch.setattr(predictor_mod, "DEFAULT_MODEL", tmp_path / "weights" / "classifier.safetensors")
    with pytest.raises(CheckpointError, match="lungxray train"):
        Predictor.load()


def test_shipped_default_model_loads():
    from lungxray.predict import DEFAULT_MODEL

    if not (DEFAULT_MODEL.is_file() and DEFAULT_MODEL.with_suffix(".json").is_file()):
        pytest.skip(f"no default model shipped yet at {DEFAULT_MODEL}")
    pred = Predictor.load()
    (r,) = pred.predict_paths([VP / "Viral Pneumonia-1.png"])  # has a sibling mask, should the model want one
    assert list(r.probabilities) == pred.classes and abs(sum(r.probabilities.values()) - 1) < 1e-6


def test_shipped_default_model_gets_the_bundled_sample_right():
    """A sanity check of the shipped weights and preprocessing, not an accuracy figure: 23 of these 30 images
    are in its training split. Broken weights, a wrong image size or normalisation would fail it."""
    from lungxray.predict import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no default model shipped yet at {DEFAULT_MODEL}")
    files = sorted(SAMPLE.glob("*/images/*.png"))
    results = Predictor.load().predict_paths(files)
    right = sum(r.prediction == f.parts[-3] for r, f in zip(results, files))
    assert len(files) == 30 and right >= 27
    assert not any(r.ood["flagged"] for r in results)


def test_inputs_are_discovered_recursively_without_mask_folders(tmp_path):
    (tmp_path / "a" / "images").mkdir(parents=True)
    (tmp_path / "a" / "masks").mkdir()
    for p in ("a/images/x.png", "a/images/x.dcm", "a/masks/x.png", "a/images/.hidden.png", "b.png"):
        (tmp_path / p).write_bytes(b"")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.png").write_bytes(b"")
    files = discover_inputs([tmp_path], exclude=[tmp_path / "out"])
    assert [f.rel.as_posix() for f in files] == ["b.png", "a/images/x.dcm", "a/images/x.png"]
    names = overlay_names(files)
    assert sorted(n.as_posix() for n in names.values()) == ["a/images/x.dcm.png", "a/images/x.png", "b.png"]
    assert names[tmp_path / "a" / "images" / "x.png"].as_posix() == "a/images/x.png"


# ------------------------------------------------------------------------------------------ Grad-CAM
def test_gradcam_has_image_shape_and_unit_range(run, ckpts):
    img = read_image(VP / "Viral Pneumonia-2.png")
    r = Predictor.load(run, cam=True).predict_array(img)
    assert r.cam is not None and r.cam.shape == img.shape == r.image.shape
    assert r.cam.min() >= 0 and r.cam.max() <= 1 and r.cam.max() - r.cam.min() > 0.5
    # the CAM pass must not change the prediction
    plain = Predictor.load(run).predict_array(img)
    np.testing.assert_allclose(r.logits, plain.logits, atol=1e-6)
    with pytest.raises(ConfigError, match="Grad-CAM"):
        Predictor.load(ckpts["mlp"], cam=True)


def test_gradcam_highlights_a_discriminative_blob(tmp_path):
    """Train a small CNN where a bright disc means class 0; its Grad-CAM must peak on the disc."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]

    def sample(blob: bool) -> tuple[np.ndarray, tuple[int, int]]:
        img = rng.uniform(0.0, 0.35, size=(32, 32)).astype(np.float32)
        cy, cx = (int(v) for v in rng.integers(7, 25, size=2))
        if blob:
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 1.0
        return img, (cy, cx)

    x = np.stack([sample(i % 2 == 0)[0] for i in range(192)])
    y = torch.tensor([i % 2 for i in range(192)])
    threads = torch.get_num_threads()
    # A model this small trains fastest on one thread; several threads spin against each other on a busy box.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model("cnn", input_size=32, classes=["COVID", "Normal"], channels=(8, 16, 16), dense=(16,),
                                 dropout=0.0)
            opt = torch.optim.Adam(model.parameters(), lr=3e-3)
            xt = torch.from_numpy(x).unsqueeze(1)
            for step in range(60):
                idx = torch.arange(step * 32, step * 32 + 32) % 192
                loss = torch.nn.functional.cross_entropy(model(xt[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    save_checkpoint(tmp_path / "blob", model.eval(), {"masks": "none"})
    pred = Predictor.load(tmp_path / "blob.safetensors", cam=True)
    for _ in range(5):
        img, (cy, cx) = sample(True)
        r = pred.predict_array(img)
        assert r.prediction == "COVID"
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
        py, px = np.unravel_index(np.argmax(r.cam), r.cam.shape)
        assert (py - cy) ** 2 + (px - cx) ** 2 <= 16  # the hottest pixel is on the disc (radius 4)
        assert r.cam[inside].mean() > 3 * r.cam[~inside].mean()


# --------------------------------------------------------------------------------------------- masks
def _manual_logits(ckpt: Path, image: Path, mask: np.ndarray | None) -> np.ndarray:
    """What training feeds a masked model: uint8-rounded image / 255 times the resized mask."""
    model, meta = load_checkpoint(ckpt)
    size = tuple(meta["image_size"])
    x = torch.from_numpy(to_uint8(resize_image(read_image(image), size))).float().div_(255.0)
    if mask is not None:
        x = x * torch.from_numpy(resize_mask(mask, size).astype(np.uint8)).float()
    with torch.no_grad():
        return model(x[None, None]).numpy()[0]


def test_masks_auto_uses_the_sibling_masks_folder(ckpts):
    img = VP / "Viral Pneumonia-4.png"
    mask_file = SAMPLE / "Viral Pneumonia" / "masks" / "Viral Pneumonia-4.png"
    (r,) = Predictor.load(ckpts["masked"]).predict_paths([img])
    assert r.mask_source == "provided" and Path(r.mask_path) == mask_file
    assert r.mask.shape == r.image.shape and r.mask.dtype == bool and 0.1 < r.mask.mean() < 0.9
    np.testing.assert_allclose(r.logits, _manual_logits(ckpts["masked"], img, read_mask(mask_file)), atol=1e-5)
    unmasked = Predictor.load(ckpts["masked"], masks="none").predict_array(read_image(img))
    assert unmasked.mask_source is None and not np.allclose(unmasked.logits, r.logits, atol=1e-5)


def test_mask_dir_is_searched(ckpts, tmp_path):
    img = shutil.copy(VP / "Viral Pneumonia-5.png", tmp_path / "study.png")
    (tmp_path / "lungs").mkdir()
    shutil.copy(SAMPLE / "Viral Pneumonia" / "masks" / "Viral Pneumonia-5.png", tmp_path / "lungs" / "study.png")
    (r,) = Predictor.load(ckpts["masked"], masks="provided", mask_dir=tmp_path / "lungs").predict_paths([img])
    assert r.mask_source == "provided" and Path(r.mask_path) == tmp_path / "lungs" / "study.png"
    with pytest.raises(ConfigError, match="no mask was found"):
        list(Predictor.load(ckpts["masked"], masks="provided").predict_paths([img]))


def test_unmasked_model_ignores_masks(run):
    (r,) = Predictor.load(run).predict_paths([VP / "Viral Pneumonia-4.png"])
    assert r.mask_source is None and r.mask is None
    with pytest.raises(ConfigError, match="trained on unmasked images"):
        Predictor.load(run, masks="provided")


def _segmenter_available() -> tuple[bool, str]:
    try:
        from lungxray.segment import Segmenter

        Segmenter.load(path=None)
    except (ImportError, LungxrayError) as exc:
        return False, f"no lung segmentation model available ({str(exc)[:120]})"
    return True, ""


def test_masks_auto_without_a_mask_fails_clearly_before_writing(ckpts, tmp_path, monkeypatch):
    import lungxray.segment.inference as seg_inference

    # As an installation whose segmentation weights went missing: the shipped path points nowhere.
    monkeypatch.setattr(seg_inference, "default_segmenter_path", lambda: tmp_path / "gone" / "lung-unet.safetensors")
    img = SAMPLE / "COVID" / "images" / "COVID-9.png"
    with pytest.raises(CheckpointError, match="segmentation model is not available") as err:
        list(Predictor.load(ckpts["masked"]).predict_paths([img]))
    assert "COVID-9.png" in str(err.value) and "mask_dir=" in str(err.value)
    res = CliRunner().invoke(main, ["predict", str(img), "--model", str(ckpts["masked"]), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--mask-dir" in res.output and not (tmp_path / "out").exists()


def test_masks_auto_without_a_mask_uses_the_shipped_segmenter(ckpts):
    available, reason = _segmenter_available()
    if not available:
        pytest.skip(reason)
    (r,) = Predictor.load(ckpts["masked"]).predict_paths([SAMPLE / "COVID" / "images" / "COVID-9.png"])
    assert r.mask_source == "predicted" and r.mask.shape == r.image.shape and r.mask.any()


def test_predicted_masks_come_from_the_segmenter(ckpts, stand_in_segmenter):
    seg = stand_in_segmenter()
    img = SAMPLE / "COVID" / "images" / "COVID-7.png"
    pred = Predictor.load(ckpts["masked"], masks="predicted", segmenter=seg)
    (r,) = pred.predict_paths([img])
    assert r.mask_source == "predicted" and seg.calls == 1
    np.testing.assert_allclose(r.logits, _manual_logits(ckpts["masked"], img, r.mask), atol=1e-5)


def test_a_mask_with_no_lungs_flags_the_result_instead_of_passing_a_black_image_off_as_an_answer(ckpts):
    img = read_image(VP / "Viral Pneumonia-4.png")
    pred = Predictor.load(ckpts["masked"])
    empty = np.zeros(img.shape, bool)
    empty[:2, :2] = True  # a few pixels: under 1% of the image
    r = pred.predict_array(img, mask=empty)
    assert r.ood["flagged"] and any(reason.startswith("no lungs found") for reason in r.ood["reasons"])
    ok = pred.predict_array(img, mask=read_mask(SAMPLE / "Viral Pneumonia" / "masks" / "Viral Pneumonia-4.png"))
    assert not any(reason.startswith("no lungs found") for reason in ok.ood["reasons"])


def test_the_csv_carries_the_out_of_distribution_flag_and_resume_keeps_it(ckpts, tmp_path):
    from lungxray.predict import predict_to_folder

    src = _copy([VP / "Viral Pneumonia-4.png"], tmp_path / "in")
    from PIL import Image

    Image.fromarray(np.zeros((300, 300), np.uint8)).save(src / "blank.png")  # nearly uniform: flagged
    out = tmp_path / "out"
    predict_to_folder([src], out, model=ckpts["mlp"], overlays=False, progress=False)
    _, rows = _rows(out / "predictions.csv")
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["blank.png"]["ood_flagged"] == "true" and "nearly uniform" in by_name["blank.png"]["ood_reasons"]
    assert by_name["Viral Pneumonia-4.png"]["ood_flagged"] in ("true", "false")
    (out / "predictions.json").unlink()  # resume from the CSV alone
    shutil.copy(VP / "Viral Pneumonia-5.png", src)
    predict_to_folder([src], out, model=ckpts["mlp"], overlays=False, progress=False, resume=True)
    _, rows = _rows(out / "predictions.csv")
    by_name = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == 3 and by_name["blank.png"]["ood_flagged"] == "true"


def test_predictions_are_never_mixed_into_a_training_run_folder(run, tmp_path):
    before = sorted(p.name for p in run.iterdir())
    res = CliRunner().invoke(main, ["predict", str(VP / "Viral Pneumonia-4.png"), "--model", str(run), "--out", str(run)])
    assert res.exit_code == 2 and "training run's folder" in res.output
    assert sorted(p.name for p in run.iterdir()) == before
    res = CliRunner().invoke(main, ["predict", str(VP / "Viral Pneumonia-4.png"), "--model", str(run),
                                    "--out", str(tmp_path / "p")])
    assert res.exit_code == 0 and "index.html to see them in a grid" in res.output


def test_a_second_predict_of_a_folder_does_not_classify_the_first_runs_overlays(ckpts, tmp_path, monkeypatch, caplog):
    scans = _copy([VP / "Viral Pneumonia-4.png"], tmp_path / "scans")
    monkeypatch.chdir(scans)
    first = predict_to_folder(["."], "test_results", model=ckpts["mlp"], progress=False)
    assert [r["path"] for r in first.rows] == ["Viral Pneumonia-4.png"] and first.overlays  # an overlay PNG was drawn
    with caplog.at_level(logging.WARNING):
        second = predict_to_folder(["."], "test_results-2", model=ckpts["mlp"], progress=False)
    assert [r["path"] for r in second.rows] == ["Viral Pneumonia-4.png"]  # not test_results/...png as an X-ray
    assert "holds lungxray's own outputs" in caplog.text
    named = discover_inputs([scans / "test_results"])  # given by name, it is read
    assert [f.path.suffix for f in named] == [".png"]


def test_resume_from_another_folder_matches_the_earlier_rows(ckpts, tmp_path, monkeypatch):
    work = tmp_path / "work"
    _copy([VP / "Viral Pneumonia-4.png"], work / "imgs")
    monkeypatch.chdir(work)
    predict_to_folder(["imgs"], "out", model=ckpts["mlp"], overlays=False, progress=False)
    shutil.copy(VP / "Viral Pneumonia-5.png", work / "imgs")
    monkeypatch.chdir(tmp_path)  # the same folders, named from elsewhere
    res = predict_to_folder([work / "imgs"], work / "out", model=ckpts["mlp"], overlays=False, progress=False,
                            resume=True)
    assert res.resumed == 1 and len(res.rows) == 2  # the earlier image is not predicted (and listed) twice
    assert sorted(Path(r["path"]).name for r in res.rows) == ["Viral Pneumonia-4.png", "Viral Pneumonia-5.png"]


def test_resume_with_other_mask_settings_is_refused(ckpts, tmp_path):
    src = _copy([VP / "Viral Pneumonia-4.png"], tmp_path / "in")
    out = tmp_path / "out"
    predict_to_folder([src], out, model=ckpts["masked"], masks="provided", mask_dir=SAMPLE / "Viral Pneumonia" / "masks",
                      overlays=False, progress=False)
    before = (out / "predictions.csv").read_text()
    shutil.copy(VP / "Viral Pneumonia-5.png", src)
    with pytest.raises(ConfigError, match="was made with masks=provided, now masks=predicted"):
        predict_to_folder([src], out, model=ckpts["masked"], masks="predicted", overlays=False, progress=False,
                          resume=True)
    assert (out / "predictions.csv").read_text() == before


def test_resume_redoes_its_own_overlays_but_never_replaces_a_users_file(ckpts, tmp_path):
    src = _copy([VP / "Viral Pneumonia-4.png"], tmp_path / "in")
    out = tmp_path / "out"
    first = predict_to_folder([src], out, model=ckpts["mlp"], progress=False)
    from lungxray.report.overlay import is_overlay

    assert is_overlay(first.overlays[0])  # what lungxray draws is marked as such
    shutil.copy(VP / "Viral Pneumonia-5.png", src)
    target = out / first.overlays[0].relative_to(out).with_name("Viral Pneumonia-5.png")
    target.write_bytes((VP / "Viral Pneumonia-5.png").read_bytes())  # the user's own PNG, by chance of that name
    with pytest.raises(ConfigError, match="is not an overlay lungxray drew"):
        predict_to_folder([src], out, model=ckpts["mlp"], progress=False, resume=True)
    assert target.read_bytes() == (VP / "Viral Pneumonia-5.png").read_bytes()
    # An overlay that an interrupted run drew before listing its input is redone.
    shutil.copy(first.overlays[0], target)
    res = predict_to_folder([src], out, model=ckpts["mlp"], progress=False, resume=True)
    assert len(res.rows) == 2 and is_overlay(target)


def test_ctrl_c_says_whether_this_run_saved_anything(run, tmp_path, monkeypatch):
    import os

    import lungxray.predict as predict_pkg

    out = tmp_path / "out"
    out.mkdir()
    old = out / "predictions.csv"
    old.write_text("an earlier run's table\n")
    os.utime(old, (0, 0))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_pkg, "predict_to_folder", interrupted)
    args = ["predict", str(VP / "Viral Pneumonia-4.png"), "--model", str(run), "--out", str(out), "--overwrite"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 130 and "before any prediction of this run was saved" in res.output
    old.write_text("this run's rows\n")  # written now, as a run's periodic save would be

    res = CliRunner().invoke(main, args)
    assert "the predictions made so far are in" in res.output and "--resume" in res.output


def test_a_mask_folder_that_will_not_be_used_is_said_so(sample_dir, caplog):
    masks = sample_dir / "Viral Pneumonia" / "masks"
    with caplog.at_level("WARNING", logger="lungxray"):
        Predictor.load(mask_dir=masks)  # the shipped model: trained on predicted masks, masks=auto
    assert "is not used" in caplog.text and "masks=provided" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="lungxray"):
        Predictor.load(mask_dir=masks, masks="provided")
    assert "is not used" not in caplog.text

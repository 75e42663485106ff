"""Batch prediction over big folders: `--resume` from predictions.csv, `--workers` decoding threads."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lungxray.cli import main
from lungxray.errors import ConfigError
import lungxray.predict.writer as writer_mod
from lungxray.predict import Predictor, predict_to_folder

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
IMAGES = sorted((SAMPLE / "Normal" / "images").glob("*.png"))[:3] + sorted((SAMPLE / "COVID" / "images").glob("*.png"))[:3]


@pytest.fixture(scope="module")
def model(tmp_path_factory, untrained_checkpoint) -> Path:
    """An untrained, seeded 32 px CNN: prediction needs weights, not good ones."""
    return untrained_checkpoint(tmp_path_factory.mktemp("model") / "cnn")


def _folder(tmp_path: Path, files: list[Path], name: str = "in") -> Path:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, d / f.name)
    return d


def _csv(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_resume_predicts_only_new_inputs(model, tmp_path, monkeypatch):
    folder = _folder(tmp_path, IMAGES[:3])
    out = tmp_path / "out"
    first = predict_to_folder([folder], out, model)
    assert len(first.rows) == 3 and first.resumed == 0
    before = {r["path"]: r for r in _csv(out)}
    _folder(tmp_path, IMAGES[3:])  # three more files arrive in the same folder

    with pytest.raises(ConfigError, match="resume=True"):
        predict_to_folder([folder], out, model)  # plain re-run: refused, nothing touched
    with pytest.raises(ConfigError, match="only one"):
        predict_to_folder([folder], out, model, resume=True, overwrite=True)

    seen: list[str] = []
    real = Predictor._read_file
    monkeypatch.setattr(Predictor, "_read_file", lambda self, f: seen.append(f.path.name) or real(self, f))
    second = predict_to_folder([folder], out, model, resume=True)
    assert sorted(seen) == sorted(f.name for f in IMAGES[3:])  # only the 3 new files were read
    assert second.resumed == 3 and len(second.rows) == 6
    rows = _csv(out)
    assert len(rows) == 6 and len({r["path"] for r in rows}) == 6
    assert all(rows[i] == before[rows[i]["path"]] for i in range(3))  # old rows kept as they were
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["n_predicted"] == 6 and [r["path"] for r in doc["rows"]] == [r["path"] for r in rows]
    assert len(list(out.glob("*.png"))) == 6 and (out / "index.html").is_file()

    seen.clear()
    third = predict_to_folder([folder], out, model, resume=True)  # nothing left to do
    assert seen == [] and third.resumed == 6 and len(_csv(out)) == 6


def test_no_input_and_no_stranger_file_is_ever_overwritten(model, tmp_path):
    folder = _folder(tmp_path, IMAGES[:2])
    originals = {f.name: f.read_bytes() for f in folder.iterdir()}
    # Writing into the input folder would put overlays over the X-rays: refused, even with overwrite or resume.
    for kwargs in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ConfigError, match="one of the inputs"):
            predict_to_folder([folder], folder, model, **kwargs)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == originals
    # The same file under another name (a hard link here; on macOS/Windows also X.PNG against x.png): refused too.
    linked = tmp_path / "linked"
    linked.mkdir()
    first = sorted(folder.iterdir())[0]
    os.link(first, linked / first.name)
    with pytest.raises(ConfigError, match="one of the inputs"):
        predict_to_folder([folder], linked, model, overwrite=True)
    assert first.read_bytes() == originals[first.name]
    # resume=True with no earlier predictions.csv is a fresh run: a user's own file there is not replaced.
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("my page")
    with pytest.raises(ConfigError, match="found no predictions.csv"):
        predict_to_folder([folder], out, model, resume=True)
    assert (out / "index.html").read_text() == "my page" and not (out / "predictions.csv").exists()


def test_interrupted_run_resumes_where_it_stopped(model, tmp_path, monkeypatch):
    folder = _folder(tmp_path, IMAGES)
    out = tmp_path / "out"
    monkeypatch.setattr(writer_mod, "FLUSH_SECONDS", 0.0)  # save after every image
    from lungxray.report import overlay

    calls = {"n": 0}
    real = overlay.write_overlay

    def ctrl_c_on_the_fifth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(overlay, "write_overlay", ctrl_c_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        predict_to_folder([folder], out, model, batch_size=2)
    assert len(_csv(out)) == 4
    assert json.loads((out / "predictions.json").read_text())["n_predicted"] == 4
    monkeypatch.setattr(overlay, "write_overlay", real)
    res = predict_to_folder([folder], out, model, batch_size=2, resume=True)
    assert res.resumed == 4 and len(res.rows) == 6
    full = predict_to_folder([folder], tmp_path / "full", model, batch_size=2)
    key = lambda rows: sorted((Path(r["path"]).name, r["prediction"], r["probability"]) for r in rows)  # noqa: E731
    assert key(_csv(out)) == key(_csv(tmp_path / "full"))
    assert {r["path"] for r in res.rows} == {r["path"] for r in full.rows}


def test_resume_refuses_another_models_predictions(model, tmp_path, untrained_checkpoint):
    folder = _folder(tmp_path, IMAGES[:2])
    out = tmp_path / "out"
    predict_to_folder([folder], out, model, overlays=False)
    other = untrained_checkpoint(tmp_path / "other", seed=1, classes=["COVID", "Normal"])
    with pytest.raises(ConfigError, match="same model"):
        predict_to_folder([folder], out, other, resume=True, overlays=False)


def test_workers_give_the_same_results_as_in_process(model, tmp_path):
    folder = _folder(tmp_path, IMAGES)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # skipped the same way by both
    a = predict_to_folder([folder], tmp_path / "a", model, batch_size=4, workers=0)
    b = predict_to_folder([folder], tmp_path / "b", model, batch_size=4, workers=3)
    assert _csv(tmp_path / "a") == _csv(tmp_path / "b")
    assert [r["path"] for r in a.rows] == [r["path"] for r in b.rows]
    assert [p for p, _ in a.skipped] == [p for p, _ in b.skipped] == [str(folder / "broken.png")]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "overlay"} for r in rows]  # noqa: E731
    assert strip(a.rows) == strip(b.rows)


def test_cli_resume_and_workers(model, tmp_path):
    folder = _folder(tmp_path, IMAGES[:3])
    out = tmp_path / "out"
    args = ["predict", str(folder), "--model", str(model), "--out", str(out), "--no-overlay"]
    res = CliRunner().invoke(main, [*args, "--workers", "2"])
    assert res.exit_code == 0, res.output
    _folder(tmp_path, IMAGES[3:])
    res = CliRunner().invoke(main, [*args, "--resume", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "predicted 3 image(s) (3 already in predictions.csv, kept)" in res.output
    assert len(_csv(out)) == 6
    res = CliRunner().invoke(main, [*args, "--workers", "-1"])
    assert res.exit_code == 2 and "--workers" in res.output


def test_resume_refuses_predictions_of_a_model_that_read_its_images_at_another_size(model, tmp_path):
    folder = _folder(tmp_path, IMAGES[:2])
    out = tmp_path / "out"
    predict_to_folder([folder], out, model, overlays=False)
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["model"]["read_size"] == doc["model"]["image_size"]  # this model reads at its input size
    predict_to_folder([folder], out, model, resume=True, overlays=False)  # the same model resumes
    doc["model"]["read_size"] = [64, 64]  # as if made by a model that read at 64 px and cropped to 32
    (out / "predictions.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="read_size"):
        predict_to_folder([folder], out, model, resume=True, overlays=False)

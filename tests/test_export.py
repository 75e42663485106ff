"""`lungxray export` and the ONNX runtime of the inference pipeline: parity with PyTorch on the bundled sample."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lungxray.cli import main
from lungxray.errors import CheckpointError
from lungxray.export import OnnxClassifier, export_onnx
from lungxray.predict import Predictor

import onnxruntime as ort  # noqa: E402  (a hard dependency: a missing one must fail, not skip)

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"
FILES = sorted(SAMPLE.glob("*/images/*.png"))
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--onnx", str(out)])
    assert res.exit_code == 0, res.output
    assert "max |p_onnx - p_torch|" in res.output
    return out


def test_export_writes_a_dynamic_batch_graph_and_its_metadata(exported, tiny_run):
    meta = json.loads(exported.with_suffix(".json").read_text())
    ckpt = json.loads((tiny_run / "best.json").read_text())
    assert meta["classes"] == ckpt["classes"] and meta["image_size"] == [32, 32]
    assert meta["temperature"] == ckpt["temperature"] and meta["onnx"]["softmax_included"]
    session = OnnxClassifier(exported)
    assert session.outputs == ["probabilities", "logits", "features"]
    assert isinstance(session.session.get_inputs()[0].shape[0], str)  # symbolic batch axis
    for n in (1, 5):
        p = session.probabilities(np.random.default_rng(n).random((n, 1, 32, 32), dtype=np.float32))
        assert p.shape == (n, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--onnx", str(exported)])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_onnx_runtime_matches_torch_on_the_sample(tiny_run, exported):
    torch_pred = Predictor.load(tiny_run)
    onnx_pred = Predictor.load(tiny_run, runtime="onnx", onnx_path=exported)
    assert onnx_pred.describe()["runtime"] == "onnx" and onnx_pred.guard is not None
    a = list(torch_pred.predict_paths(FILES, batch_size=8))
    b = list(onnx_pred.predict_paths(FILES, batch_size=8))
    assert len(a) == len(b) == 30
    p_torch = np.array([list(r.probabilities.values()) for r in a])
    p_onnx = np.array([list(r.probabilities.values()) for r in b])
    assert np.abs(p_onnx - p_torch).max() < TOLERANCE
    assert [r.prediction for r in a] == [r.prediction for r in b]
    # the OOD guard sees the same features through the ONNX graph's "features" output
    np.testing.assert_allclose([r.ood["distance"] for r in b], [r.ood["distance"] for r in a], rtol=1e-3)


def test_onnx_runtime_exports_to_the_cache_and_keeps_gradcam_on_torch(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGXRAY_CACHE", str(tmp_path))
    pred = Predictor.load(tiny_run, runtime="onnx", cam=True)
    assert Path(pred.describe()["onnx"]).parent == tmp_path / "onnx"
    r = next(pred.predict_paths(FILES[:1]))
    ref = next(Predictor.load(tiny_run, cam=True).predict_paths(FILES[:1]))
    assert r.cam is not None and r.cam.shape == r.image.shape
    np.testing.assert_allclose(r.cam, ref.cam, atol=1e-4)
    assert not pred.predict_array(r.image, cam=False).cam  # a request may skip the heatmap


def test_onnx_file_from_another_checkpoint_is_refused(tiny_run, tmp_path, untrained_checkpoint):
    other = untrained_checkpoint(tmp_path / "other", seed=1)
    onnx = export_onnx(other, tmp_path / "exported" / "other.onnx")
    with pytest.raises(CheckpointError, match="was not exported from"):
        Predictor.load(tiny_run, runtime="onnx", onnx_path=onnx)
    with pytest.raises(CheckpointError, match="runtime=onnx"):
        Predictor.load(onnx)


def test_predict_cli_runtime_onnx_writes_the_same_table(tiny_run, tmp_path):
    args = ["predict", str(SAMPLE / "COVID"), "--model", str(tiny_run), "--no-overlay"]
    for runtime in ("torch", "onnx"):
        res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / runtime), "--runtime", runtime])
        assert res.exit_code == 0, res.output
    tables = [list(csv.DictReader(open(tmp_path / rt / "predictions.csv"))) for rt in ("torch", "onnx")]
    assert [r["prediction"] for r in tables[0]] == [r["prediction"] for r in tables[1]]
    for a, b in zip(*tables):
        assert all(abs(float(a[c]) - float(b[c])) <= 2e-6 + TOLERANCE for c in ("COVID", "Normal", "Viral Pneumonia"))
    doc = json.loads((tmp_path / "onnx" / "predictions.json").read_text())
    assert doc["model"]["runtime"] == "onnx"


def test_export_segmentation(tiny_run, tmp_path):
    from lungxray.segment.model import LungUNet, save_segmenter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = LungUNet((32, 32), channels=[4, 8, 16], strides=[2, 2], num_res_units=1).eval()
    weights = save_segmenter(tmp_path / "unet", unet, {"threshold": 0.5})
    out = tmp_path / "exp" / "model.onnx"
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--onnx", str(out), "--segmentation",
                                    "--segmentation-weights", str(weights)])
    assert res.exit_code == 0, res.output
    lungs = out.with_name("model-lungs.onnx")
    assert lungs.is_file() and json.loads(lungs.with_suffix(".json").read_text())["input_size"] == [32, 32]
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    got = ort.InferenceSession(str(lungs)).run(None, {"image": x})[0]
    with torch.no_grad():
        ref = torch.sigmoid(unet(torch.from_numpy(x))).numpy()
    assert got.shape == (3, 1, 32, 32) and np.abs(got - ref).max() < TOLERANCE

    # no segmentation weights: a clear error and nothing written, not even the classifier
    out2 = tmp_path / "exp2" / "model.onnx"
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--onnx", str(out2), "--segmentation",
                                    "--segmentation-weights", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "--segmentation" in res.output and "Traceback" not in res.output
    assert not out2.exists()


def test_an_export_that_disagrees_with_torch_is_an_error_and_is_not_kept(tiny_run, tmp_path, monkeypatch):
    import lungxray.export as export_mod

    monkeypatch.setattr(export_mod, "onnx_parity", lambda *a, **k: 0.3)  # as a broken onnxruntime would give
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--onnx", str(tmp_path / "c.onnx")])
    assert res.exit_code != 0 and "disagrees with the PyTorch model" in res.output and "3.00e-01" in res.output
    assert list(tmp_path.iterdir()) == []  # neither the graph nor its metadata is left for --runtime onnx
    with pytest.raises(CheckpointError, match="disagrees"):  # the cached export of load(runtime="onnx") too
        export_mod.cached_onnx(tiny_run, cache_dir=tmp_path / "cache")


def test_inspect_refuses_a_negative_copy_distance(sample_dir):
    res = CliRunner().invoke(main, ["data", "inspect", str(sample_dir), "--max-distance", "-5"])
    assert res.exit_code == 2 and "max-distance" in res.output


def test_an_interrupted_re_export_leaves_no_old_metadata_beside_the_new_graph(tiny_run, tmp_path, monkeypatch):
    import lungxray.export as export_mod

    out = tmp_path / "c.onnx"
    export_mod.export_onnx(tiny_run, out)
    assert out.with_suffix(".json").is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after the graph, before its metadata

    monkeypatch.setattr(export_mod, "write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_mod.export_onnx(tiny_run, out, overwrite=True)
    assert out.is_file() and not out.with_suffix(".json").exists()


def test_an_export_never_replaces_a_checkpoints_metadata(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "best.json").read_bytes()
    res = CliRunner().invoke(main, ["export", str(run), "--onnx", str(run / "best.onnx"), "--overwrite"])
    assert res.exit_code != 0 and "not the metadata of an earlier ONNX export" in res.output, res.output
    assert "Traceback" not in res.output
    assert (run / "best.json").read_bytes() == before and not (run / "best.onnx").exists()


def test_a_failed_re_export_keeps_the_earlier_export(tiny_run, tmp_path, monkeypatch):
    import lungxray.export as export_mod

    out = tmp_path / "c.onnx"
    export_mod.export_onnx(tiny_run, out)
    graph, meta = out.read_bytes(), out.with_suffix(".json").read_bytes()
    monkeypatch.setattr(export_mod, "onnx_parity", lambda *a, **k: 0.3)
    with pytest.raises(CheckpointError, match="nothing was written"):
        export_mod.export_onnx(tiny_run, out, overwrite=True)
    assert out.read_bytes() == graph and out.with_suffix(".json").read_bytes() == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.onnx"]  # no temporary file left


def test_segmentation_weights_without_segmentation_is_refused(tiny_run, tmp_path):
    out = tmp_path / "c.onnx"
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--onnx", str(out), "--segmentation-weights",
                                    str(tmp_path / "unet")])
    assert res.exit_code != 0 and "only used with" in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_predict_cli_takes_the_export_given_and_refuses_another_checkpoints(tiny_run, tmp_path, untrained_checkpoint):
    mine = export_onnx(tiny_run, tmp_path / "mine.onnx")
    args = ["predict", str(FILES[0]), "--model", str(tiny_run), "--no-overlay", "--runtime", "onnx"]
    ok = CliRunner().invoke(main, [*args, "--onnx", str(mine), "--out", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    other = export_onnx(untrained_checkpoint(tmp_path / "other", seed=1), tmp_path / "exports" / "other.onnx")
    refused = CliRunner().invoke(main, [*args, "--onnx", str(other), "--out", str(tmp_path / "b")])
    assert refused.exit_code != 0 and "was not exported from" in refused.output  # the file given is the one used
    torch_with_file = CliRunner().invoke(main, ["predict", str(FILES[0]), "--model", str(tiny_run), "--onnx", str(mine)])
    assert torch_with_file.exit_code == 2 and "--runtime onnx" in torch_with_file.output


def test_the_shipped_model_exports_as_default(tmp_path):
    res = CliRunner().invoke(main, ["export", "default", "--onnx", str(tmp_path / "default.onnx")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "default.json").read_text())
    assert meta["onnx"]["max_abs_diff_vs_torch"] <= TOLERANCE and meta["model"] == "lungenc"

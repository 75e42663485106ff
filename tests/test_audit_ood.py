"""Shortcut audit and the out-of-distribution guard."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lungxray.audit import audit_run
from lungxray.config import load_config
from lungxray.data.api import split_dataset
from lungxray.ood import FeatureGuard, input_checks, penultimate_features
from lungxray.train import train
from lungxray.models import create_model

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    split_dataset(SAMPLE, tmp / "split.csv", seed=0, progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 2, "batch_size": 8})
    return train(cfg, SAMPLE, tmp / "run", tmp / "split.csv", progress=False)


def test_audit_reports_all_measurements(run, stand_in_segmenter):
    r = audit_run(run, SAMPLE, "test", segmenter=stand_in_segmenter(), progress=False)
    assert set(r["accuracy"]) == {"full", "lungs_only", "lungs_removed"}
    assert all(0 <= v <= 1 for v in r["accuracy"].values())
    assert r["n"] == 6
    # VP test images have provided masks; the others get the stand-in segmenter's.
    assert r["masks"]["provided"] == 2 and r["masks"]["predicted"] == 4
    g = r["gradcam_mass_in_lungs"]
    assert 0 <= g["p10"] <= g["median"] <= g["p90"] <= 1
    assert 0.05 < r["lung_area_fraction_mean"] < 0.7
    for name in r["accuracy"]:
        lo, hi = r["accuracy_ci95"][name]
        assert lo <= r["accuracy"][name] <= hi
        assert set(r["recall_per_class"][name]) == {"COVID", "Normal", "Viral Pneumonia"}
    out = run / "audit-test"
    assert json.loads((out / "audit.json").read_text())["verdict"] == r["verdict"]
    assert (out / "audit.png").stat().st_size > 1000 and (out / "report.html").is_file()


def test_audit_needs_masks_when_provided_only(run):
    from lungxray.errors import DatasetError

    with pytest.raises(DatasetError, match="have no mask"):
        audit_run(run, SAMPLE, "test", masks="provided", progress=False, overwrite=True)  # audit-test/ exists


def test_feature_guard_flags_far_points():
    rng = np.random.default_rng(0)
    train_f = rng.normal(size=(500, 8))
    val_f = rng.normal(size=(200, 8))
    guard = FeatureGuard.fit(train_f, val_f)
    d_in = guard.distance(rng.normal(size=(200, 8)))
    d_out = guard.distance(rng.normal(loc=6.0, size=(50, 8)))
    assert (d_in > guard.threshold).mean() < 0.05
    assert (d_out > guard.threshold).all()


def test_feature_guard_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    guard = FeatureGuard.fit(rng.normal(size=(100, 4)), rng.normal(size=(50, 4)))
    guard.save(tmp_path / "g.ood.safetensors")
    back = FeatureGuard.load(tmp_path / "g.ood.safetensors")
    x = rng.normal(size=(5, 4))
    assert np.allclose(back.distance(x), guard.distance(x), rtol=1e-4)
    assert back.threshold == pytest.approx(guard.threshold)
    assert back.layout is None  # a guard saved without the layout part (as older shipped models) still loads
    guard.layout = FeatureGuard.fit(rng.normal(size=(100, 3)), rng.normal(size=(50, 3)))
    guard.save(tmp_path / "g2.ood.safetensors")
    back = FeatureGuard.load(tmp_path / "g2.ood.safetensors")
    y = rng.normal(size=(5, 3))
    assert np.allclose(back.layout.distance(y), guard.layout.distance(y), rtol=1e-4)


def test_input_checks():
    rng = np.random.default_rng(0)
    xray = rng.uniform(0, 1, (64, 64)).astype(np.float32)
    assert input_checks(xray) == []
    assert "uniform" in input_checks(np.full((64, 64), 0.5, np.float32))[0]
    photo = np.stack([xray, xray * 0.2, 1 - xray], -1)
    assert any("colour" in r for r in input_checks(xray, photo))
    gray_rgb = np.stack([xray] * 3, -1)
    assert input_checks(xray, gray_rgb) == []
    tiny = input_checks(xray[:12, :40])  # a 40x12 thumbnail: nothing of the lungs' detail is left
    assert len(tiny) == 1 and tiny[0].startswith("tiny image (40x12 px")


def test_a_tiny_image_is_flagged_not_given_a_confident_diagnosis(sample_dir):
    from PIL import Image

    import lungxray

    small = Image.open(sample_dir / "COVID" / "images" / "COVID-10.png").resize((12, 12))
    result = lungxray.load().predict(small)
    assert result.ood["flagged"] and any(r.startswith("tiny image") for r in result.ood["reasons"])


def test_penultimate_features_match_logits():
    model = create_model("cnn", input_size=32).eval()
    x = torch.rand(3, 1, 32, 32)
    feats, logits = penultimate_features(model, x)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert feats.shape == (3, last.in_features)
    assert torch.allclose(last(feats), logits, atol=1e-5)


def test_guard_fitted_for_a_run_includes_the_layout_part(tmp_path, capsys, monkeypatch):
    from lungxray.data.api import load_split, split_dataset
    from lungxray.ood import fit_guard_for_run, guard_path

    split_csv = tmp_path / "split.csv"
    split_dataset(SAMPLE, split_csv, seed=0, progress=False)
    data = load_split(SAMPLE, split_csv, ["COVID", "Normal", "Viral Pneumonia"], (32, 32), progress=False)
    model = create_model("cnn", input_size=32).eval()
    (tmp_path / "run").mkdir()
    idx = np.arange(len(data.rows))
    import functools

    import lungxray.progress as progress_mod

    # An interval of 0 s prints every update, as a long fit would every 10 s.
    monkeypatch.setattr(progress_mod, "bar", functools.partial(progress_mod.bar, interval=0.0))
    fit_guard_for_run(tmp_path / "run", model, data, idx, idx, "none", progress=True)
    # Without a terminal each part reports plain progress lines (the step after a training used to be silent).
    err = capsys.readouterr().err
    assert f"OOD guard (train): {len(idx)}/{len(idx)}" in err and f"OOD guard (val): {len(idx)}/{len(idx)}" in err
    back = FeatureGuard.load(guard_path(tmp_path / "run"))
    assert back.layout is not None and back.layout.mean.shape == (36,)
    assert np.isfinite(back.layout.threshold) and back.layout.threshold > 0


def _audit_result(removed: float, other: float, removed_share: float = 0.4, other_share: float = 0.4,
                  lung_only: bool = False) -> dict:
    names = ("model_input", "lungs_removed", "lung_texture_removed") if lung_only else ("full", "lungs_only", "lungs_removed")
    acc = {names[0]: 0.95, "lungs_removed": removed, names[2] if lung_only else "lungs_only": other}
    share = {names[0]: 0.4, "lungs_removed": removed_share, names[2] if lung_only else "lungs_only": other_share}
    return {"chance_accuracy": 0.4, "lung_only_model": lung_only, "accuracy": acc,
            "accuracy_ci95": {k: [v - 0.03, v + 0.03] for k, v in acc.items()}, "largest_predicted_class_share": share}


@pytest.mark.parametrize(
    "removed, other, removed_share, other_share, expected",
    [
        (0.64, 0.90, 0.4, 0.4, "uses image content outside the lungs"),
        (0.41, 0.40, 0.95, 0.97, "Inconclusive"),          # both ablations collapse onto one class
        (0.42, 0.43, 0.5, 0.5, "Inconclusive"),            # both at chance
        (0.41, 0.90, 0.95, 0.4, "no evidence of a shortcut outside the lungs"),
        (0.64, 0.90, 0.97, 0.4, "no evidence of a shortcut outside the lungs"),  # 'above chance' by one class only
    ],
)
def test_verdict_says_inconclusive_when_the_ablations_carry_nothing(removed, other, removed_share, other_share, expected):
    from lungxray.audit import verdict

    text = verdict(_audit_result(removed, other, removed_share, other_share))
    assert expected in text
    if expected != "Inconclusive":
        assert "Inconclusive" not in text


def test_verdict_for_a_lung_only_model_reads_the_texture_check():
    from lungxray.audit import verdict

    text = verdict(_audit_result(removed=0.41, other=0.80, removed_share=0.95, lung_only=True))
    assert "Nothing outside the lungs reaches it" in text and "Lung shape, size and exposure alone" in text
    text = verdict(_audit_result(removed=0.70, other=0.41, other_share=0.95, lung_only=True))
    assert "still finds something outside" in text and "relies on what is inside the lungs" in text


def test_audit_of_a_lung_only_model_uses_its_view(tmp_path, stand_in_segmenter):
    # A tiny model labelled lung-only in its metadata: the audit must build its variants through the model's
    # lung view (crop + grown mask) with the stand-in segmenter's masks for every image.
    split_dataset(SAMPLE, tmp_path / "split.csv", seed=0, progress=False)
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "calibrate": False})
    run = train(cfg, SAMPLE, tmp_path / "run", tmp_path / "split.csv", progress=False)
    meta = json.loads((run / "best.json").read_text())
    meta["masks"], meta["lung_view"] = "predicted", {"crop": True, "margin": 0.05, "dilate": 1}
    (run / "best.json").write_text(json.dumps(meta))
    r = audit_run(run, SAMPLE, "test", masks="predicted", segmenter=stand_in_segmenter(), progress=False)
    assert set(r["accuracy"]) == {"model_input", "lungs_removed", "lung_texture_removed"}
    assert r["lung_only_model"] and r["lung_view"]["crop"] is True
    assert r["masks"]["predicted"] == r["n"]
    assert "Lung-only model" in r["verdict"]


def test_audit_with_every_gradcam_map_empty_reports_no_mass_instead_of_failing(run, stand_in_segmenter, tmp_path,
                                                                              monkeypatch):
    import lungxray.predict as predict_mod  # audit imports make_gradcam from here when it runs

    def flat_cam(model, layer):
        return lambda x, class_idx=None: torch.zeros(len(x), 1, *x.shape[-2:])

    monkeypatch.setattr(predict_mod, "make_gradcam", flat_cam)
    r = audit_run(run, SAMPLE, "test", segmenter=stand_in_segmenter(), out=tmp_path / "a", progress=False)
    assert "gradcam_mass_in_lungs" not in r and (tmp_path / "a" / "audit.png").is_file()


def test_audit_out_that_is_a_file_is_refused_and_left_alone(run, tmp_path):
    from lungxray.errors import ConfigError

    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(ConfigError, match="is a file"):
        audit_run(run, SAMPLE, "test", out=target, progress=False)
    assert target.read_text() == "mine"


def test_audit_out_that_cannot_be_written_fails_before_any_work(run, tmp_path, monkeypatch):
    import lungxray.audit as audit_mod
    from lungxray.errors import CheckpointError, ConfigError

    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(audit_mod, "load_split", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ConfigError, match="cannot write there"):
        audit_run(run, SAMPLE, "test", out=tmp_path / "afile" / "audit", progress=False)
    # A mistyped run is refused before its default output folder is made.
    with pytest.raises(CheckpointError):
        audit_run(tmp_path / "typo", SAMPLE, "test", progress=False)
    assert not (tmp_path / "typo").exists()

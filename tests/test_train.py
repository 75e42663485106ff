"""Training engine, checkpoints, resume and evaluation on the bundled sample at a tiny size."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lungxray.checkpoint import load_checkpoint, load_state
from lungxray.config import load_config
from lungxray.data.api import split_dataset
from lungxray.errors import CheckpointError, ConfigError, LungxrayError
from lungxray.evaluate import evaluate_run
from lungxray.models import list_models
from lungxray import train as train_module
from lungxray.train import blended_loss, l2_penalty, train

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "split.csv"
    split_dataset(SAMPLE, out, seed=0, progress=False)
    return out


def _cfg(**kw):
    base = {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "lr": 1e-3}
    base.update(kw)
    return load_config(None, base)


def _history(run):
    with open(run / "history.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("model", list_models())
def test_each_model_trains_and_writes_a_complete_run(model, split_csv, tmp_path):
    run = train(_cfg(model=model), SAMPLE, tmp_path / "run", split_csv, progress=False)
    for name in ("config.json", "split.csv", "history.csv", "best.safetensors", "best.json", "last.safetensors",
                 "last.json", "state.pt", "curves.png", "layers.png", "summary.json"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "best.json").read_text())
    assert meta["classes"] == ["COVID", "Normal", "Viral Pneumonia"]
    assert meta["model"] == model and meta["image_size"] == [32, 32] and meta["masks"] == "none"
    assert meta["data"]["fingerprint"] and "loss" in meta["val_metrics"]
    assert meta["version"] and meta["normalization"]["std"] > 0
    hist = _history(run)
    assert [h["epoch"] for h in hist] == ["1"]
    assert float(hist[0]["images_per_s"]) > 0 and float(hist[0]["lr"]) == pytest.approx(1e-3)
    model_obj, _ = load_checkpoint(run)
    assert model_obj(torch.rand(1, 1, 32, 32)).shape == (1, 3)
    assert not list(run.glob("*.pkl")) and not list(run.glob("*.pickle"))


def test_same_seed_same_result(split_csv, tmp_path):
    cfg = _cfg(epochs=2, augment=True)
    a = train(cfg, SAMPLE, tmp_path / "a", split_csv, progress=False)
    b = train(cfg, SAMPLE, tmp_path / "b", split_csv, progress=False)
    ha, hb = _history(a), _history(b)
    assert [(r["train_loss"], r["val_loss"]) for r in ha] == [(r["train_loss"], r["val_loss"]) for r in hb]


def test_training_does_not_change_global_rng(split_csv, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(_cfg(), SAMPLE, tmp_path / "r", split_csv, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_resume_after_interrupt_matches_uninterrupted_run(split_csv, tmp_path, monkeypatch):
    import lungxray.runs as runs_mod

    cfg = _cfg(epochs=3, augment=True, scheduler="cosine")
    full = train(cfg, SAMPLE, tmp_path / "full", split_csv, progress=False)
    real = runs_mod.write_history

    def interrupt_in_epoch_two(path, rows, columns=None):
        if len(rows) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while epoch 2 was being saved
        real(path, rows, columns)

    monkeypatch.setattr(runs_mod, "write_history", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, SAMPLE, tmp_path / "part", split_csv, progress=False)
    monkeypatch.setattr(runs_mod, "write_history", real)
    assert load_state(tmp_path / "part" / "state.pt")["epoch"] == 1
    resumed = train(cfg, SAMPLE, tmp_path / "part", None, resume=True, progress=False)
    key = lambda h: [(r["epoch"], r["train_loss"], r["val_loss"], r["val_acc"], r["lr"]) for r in h]
    assert key(_history(resumed)) == key(_history(full))  # continued, not restarted, and bit-identical


def test_resume_is_exact_with_constant_lr(split_csv, tmp_path):
    full = train(_cfg(epochs=3, augment=True), SAMPLE, tmp_path / "full", split_csv, progress=False)
    part = train(_cfg(epochs=1, augment=True), SAMPLE, tmp_path / "part", split_csv, progress=False)
    resumed = train(_cfg(epochs=3, augment=True), SAMPLE, part, None, resume=True, progress=False)
    key = lambda h: [(r["epoch"], r["train_loss"], r["val_loss"], r["val_acc"]) for r in h]
    assert key(_history(resumed)) == key(_history(full))


def test_existing_run_is_never_overwritten(split_csv, tmp_path):
    run = train(_cfg(), SAMPLE, tmp_path / "run", split_csv, progress=False)
    before = (run / "best.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(_cfg(), SAMPLE, run, split_csv, progress=False)
    assert (run / "best.safetensors").read_bytes() == before
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(_cfg(), SAMPLE, tmp_path / "empty", split_csv, resume=True, progress=False)


def test_provided_masks_refused_when_some_images_lack_them(split_csv, tmp_path):
    with pytest.raises(ConfigError, match="no usable mask"):
        train(_cfg(masks="provided"), SAMPLE, tmp_path / "run", split_csv, progress=False)


def test_l2_penalty_is_applied(split_csv, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(5.0)
    assert float(l2_penalty(model).detach()) == pytest.approx(16.0)  # 4 weights * 2^2, biases excluded
    # A strong L2 shrinks the weights relative to the same run without it.
    a = train(_cfg(epochs=2, lr=1e-2), SAMPLE, tmp_path / "a", split_csv, progress=False)
    b = train(_cfg(epochs=2, lr=1e-2, l2=1.0), SAMPLE, tmp_path / "b", split_csv, progress=False)
    ma, _ = load_checkpoint(a, "last")
    mb, _ = load_checkpoint(b, "last")
    assert float(l2_penalty(mb).detach()) < 0.9 * float(l2_penalty(ma).detach())


def test_evaluation_is_consistent(split_csv, tmp_path):
    run = train(_cfg(epochs=2), SAMPLE, tmp_path / "run", split_csv, progress=False)
    m = evaluate_run(run, SAMPLE, "test", n_bootstrap=50, progress=False)
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == m["n"] == 6
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    out = run / "eval-test"
    for name in ("metrics.json", "predictions.csv", "report.html", "confusion.png", "roc.png", "reliability.png", "curves.png"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    # The layer table is linked, not appended; the link resolves from the report's folder.
    assert '<a href="../layers.png">' in html and html.rstrip().endswith("</html>")
    assert html.count("data:image/png;base64,") == len(list(out.glob("*.png")))
    # Evaluating again without --out writes a new folder and leaves the first alone.
    first = (out / "metrics.json").read_text()
    m_again = evaluate_run(run, SAMPLE, "test", n_bootstrap=50, progress=False)
    assert (run / "eval-test-2" / "metrics.json").is_file() and (out / "metrics.json").read_text() == first
    assert m_again["confusion_matrix"] == m["confusion_matrix"]
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert all(abs(sum(float(r[c]) for c in ("COVID", "Normal", "Viral Pneumonia")) - 1) < 1e-4 for r in rows)
    # Only the test split was scored.
    with open(run / "split.csv") as fh:
        test_paths = {r["path"] for r in csv.DictReader(fh) if r["split"] == "test"}
    assert {r["path"] for r in rows} == test_paths

    # A checkpoint file (as shipped: weights + .json, no run folder) scores the same, given the split and --out.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for suffix in (".safetensors", ".json"):
        (shipped / f"classifier{suffix}").write_bytes((run / f"best{suffix}").read_bytes())
    with pytest.raises(ConfigError, match="split_csv="):
        evaluate_run(shipped / "classifier.safetensors", SAMPLE, "test", progress=False)
    m2 = evaluate_run(shipped / "classifier.safetensors", SAMPLE, "test", run / "split.csv", out=tmp_path / "ev",
                      n_bootstrap=50, progress=False)
    assert m2["confusion_matrix"] == m["confusion_matrix"]


def test_checkpoint_loading_refuses_pickles(tmp_path):
    evil = tmp_path / "evil.pt"

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Boom()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_state(evil)
    with pytest.raises(CheckpointError, match="not loaded"):
        load_checkpoint(evil)


def test_calibrate_existing_run_keeps_t1_on_tiny_validation(split_csv, tmp_path):
    from lungxray.calibrate import calibrate_existing

    run = train(_cfg(calibrate=False), SAMPLE, tmp_path / "run", split_csv, progress=False)
    assert "calibration" not in json.loads((run / "best.json").read_text())
    meta = calibrate_existing(run, SAMPLE, progress=False)
    assert meta["temperature"] == 1.0 and meta["calibration"]["method"].startswith("skipped")
    assert meta["calibration"]["n"] == 3


def test_history_logs_the_learning_rate_each_epoch_used(split_csv, tmp_path):
    # One-cycle moves the rate after every step; the history must show the rate of the epoch's last step
    # (annealed to ~0 in the final epoch), not the one the scheduler sets for a step that never happens.
    run = train(_cfg(epochs=3, scheduler="onecycle", optimizer="adamw"), SAMPLE, tmp_path / "run", split_csv,
                progress=False)
    lrs = [float(h["lr"]) for h in _history(run)]
    assert all(0 < lr <= 1e-3 * (1 + 1e-9) for lr in lrs)
    assert lrs[-1] < 1e-6 < lrs[1]


def test_ema_weights_are_the_ones_checkpointed_and_resume_exactly(split_csv, tmp_path):
    cfg = _cfg(epochs=2, augment=True, ema=0.9)
    full = train(cfg, SAMPLE, tmp_path / "full", split_csv, progress=False)
    state = load_state(full / "state.pt")
    ema_weights = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    last, _ = load_checkpoint(full, "last")
    saved = last.state_dict()
    # The checkpoint holds the average, not the raw weights the optimiser last wrote.
    assert all(torch.equal(saved[k], ema_weights[k]) for k in saved)
    assert any(not torch.equal(saved[k], state["model"][k]) for k in saved if saved[k].is_floating_point())
    part = train(_cfg(epochs=1, augment=True, ema=0.9), SAMPLE, tmp_path / "part", split_csv, progress=False)
    resumed = train(cfg, SAMPLE, part, None, resume=True, progress=False)
    key = lambda h: [(r["epoch"], r["train_loss"], r["val_loss"], r["val_acc"]) for r in h]
    assert key(_history(resumed)) == key(_history(full))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2])
def test_ema_decay_out_of_range_is_refused(bad):
    with pytest.raises(ConfigError, match="ema"):
        _cfg(ema=bad)


def test_progressive_resizing_trains_small_then_full_and_validates_full(split_csv, tmp_path, monkeypatch):
    import lungxray.train as train_module

    seen = []  # (training?, side) of every batch the network sees
    real_create = train_module.create_model

    def recording_create(*args, **kwargs):
        model = real_create(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen.append((m.training, inp[0].shape[-1])))
        return model

    monkeypatch.setattr(train_module, "create_model", recording_create)
    run = train(_cfg(model="xrnet", epochs=3, low_res_size=16, low_res_epochs=2), SAMPLE, tmp_path / "run",
                split_csv, progress=False)
    train_sides = [side for training, side in seen if training]
    n = len(train_sides) // 3  # the same number of batches every epoch
    assert train_sides == [16] * (2 * n) + [32] * n
    evals = [side for training, side in seen if not training]
    # Two pre-flight checks (before the run folder is touched, on a throwaway model, and on the model trained), then
    # validation at full size.
    assert evals[:2] == [16, 16] and set(evals[2:]) == {32}
    assert len(_history(run)) == 3


@pytest.mark.parametrize("bad, match", [({"low_res_size": 16}, "go together"),
                                        ({"low_res_size": 32, "low_res_epochs": 1}, "below image_size"),
                                        ({"low_res_size": 16, "low_res_epochs": 3}, "between 1 and epochs")])
def test_progressive_resizing_settings_are_checked(bad, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(epochs=3, **bad)


def test_progressive_resizing_refuses_a_model_of_fixed_input_size(split_csv, tmp_path):
    with pytest.raises(ConfigError, match="fully convolutional"):
        train(_cfg(model="mlp", epochs=2, low_res_size=16, low_res_epochs=1), SAMPLE, tmp_path / "run",
              split_csv, progress=False)


def test_mixup_blends_the_loss_and_resumes_exactly(split_csv, tmp_path):
    cfg = _cfg(epochs=2, augment=True, mixup=0.4)
    full = train(cfg, SAMPLE, tmp_path / "full", split_csv, progress=False)
    plain = train(_cfg(epochs=2, augment=True), SAMPLE, tmp_path / "plain", split_csv, progress=False)
    # Same seed and data: blending changes what the network learns from.
    assert _history(full)[0]["train_loss"] != _history(plain)[0]["train_loss"]
    assert json.loads((full / "config.json").read_text())["mixup"] == 0.4
    part = train(_cfg(epochs=1, augment=True, mixup=0.4), SAMPLE, tmp_path / "part", split_csv, progress=False)
    resumed = train(cfg, SAMPLE, part, None, resume=True, progress=False)
    key = lambda h: [(r["epoch"], r["train_loss"], r["val_loss"], r["val_acc"]) for r in h]
    assert key(_history(resumed)) == key(_history(full))


def test_mixup_trains_on_both_labels_of_each_blend(split_csv, tmp_path, monkeypatch):
    calls = []

    def fixed_mixup(x, gen, alpha):
        partner = torch.arange(len(x)).flip(0)
        return 0.7 * x + 0.3 * x[partner], partner, 0.7

    def spy(logits, y, y2, lam, weights, smoothing):
        calls.append((y.clone(), y2.clone(), lam))
        return blended_loss(logits, y, y2, lam, weights, smoothing)

    monkeypatch.setattr(train_module, "mixup", fixed_mixup)
    monkeypatch.setattr(train_module, "blended_loss", spy)
    train(_cfg(mixup=0.4), SAMPLE, tmp_path / "r", split_csv, progress=False)
    assert calls and all(lam == 0.7 and torch.equal(y2, y.flip(0)) for y, y2, lam in calls)
    logits, y, y2 = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 0, 1, 1])
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(blended_loss(logits, y, y2, 0.7, None, 0.0), 0.7 * ce(logits, y) + 0.3 * ce(logits, y2))
    assert torch.equal(blended_loss(logits, y, y2, 1.0, None, 0.0), ce(logits, y))


def test_negative_mixup_is_refused():
    with pytest.raises(ConfigError, match="mixup=-0.2: must be >= 0"):
        _cfg(mixup=-0.2)


@pytest.mark.parametrize("setting, overwrite, message", [
    ({"freeze": "encoder.9"}, True, "no part named 'encoder.9'"),
    ({"pretrained": "runs/no-such-unet"}, True, "pretrained=runs/no-such-unet: no such file"),
    ({}, False, "already holds a run"),  # a taken folder, without overwrite
])
def test_a_misnamed_part_or_start_fails_before_the_run_folder_or_the_data_is_touched(tmp_path, monkeypatch,
                                                                                    setting, overwrite, message):
    """On a first run at a size the split's loading segments every image (minutes), and overwrite=True clears the
    old run: these mistakes must surface before either."""
    def load_split(*args, **kwargs):
        raise AssertionError("the split was loaded before the settings were checked")

    monkeypatch.setattr(train_module, "load_split", load_split)
    old = tmp_path / "run"
    old.mkdir()
    (old / "best.safetensors").write_bytes(b"an earlier run")
    cfg = load_config(None, {"model": "lungenc", "image_size": 32, "epochs": 1, **setting})
    before = torch.random.get_rng_state()
    with pytest.raises(ConfigError, match=message):
        train(cfg, SAMPLE, old, overwrite=overwrite)
    assert (old / "best.safetensors").read_bytes() == b"an earlier run"
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("case", ["mistyped split", "masks the data lacks"])
def test_overwrite_keeps_the_old_run_when_the_data_cannot_be_loaded(tmp_path, split_csv, case):
    old = tmp_path / "run"
    old.mkdir()
    (old / "best.safetensors").write_bytes(b"an earlier run")
    if case == "mistyped split":
        cfg, manifest, message = _cfg(), tmp_path / "splt.csv", "splt.csv"
    else:  # only Viral Pneumonia has masks in the sample
        cfg, manifest, message = _cfg(masks="provided"), split_csv, "mask"
    with pytest.raises(LungxrayError, match=message):
        train(cfg, SAMPLE, old, manifest, overwrite=True, progress=False)
    assert (old / "best.safetensors").read_bytes() == b"an earlier run"


def test_per_class_with_a_manifest_is_refused_not_silently_ignored(tmp_path, split_csv):
    with pytest.raises(ConfigError, match="per_class=5 caps a split made on the fly"):
        train(_cfg(per_class=5), SAMPLE, tmp_path / "run", split_csv, progress=False)
    assert not (tmp_path / "run").exists()


def test_geometry_settings_without_augment_are_warned_about(tmp_path, split_csv, caplog):
    with caplog.at_level("WARNING", logger="lungxray.train"):
        train(_cfg(hflip=True), SAMPLE, tmp_path / "run", split_csv, progress=False)
    assert "hflip set, but augment = false" in caplog.text


def test_cli_resume_keeps_the_runs_own_length_unless_epochs_is_given(split_csv, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import lungxray.runs as runs_mod
    from lungxray.cli import main

    run = train(_cfg(epochs=2), SAMPLE, tmp_path / "run", split_csv, progress=False)
    args = ["train", "--out", str(run), "--data", str(SAMPLE), "--resume"]
    done = CliRunner().invoke(main, args)  # finished run: nothing left (was: the default 10 epochs, 8 more)
    assert done.exit_code == 0, done.output
    assert len(_history(run)) == 2
    longer = CliRunner().invoke(main, args + ["--epochs", "3"])  # a constant rate may be extended
    assert longer.exit_code == 0, longer.output
    assert len(_history(run)) == 3
    # Extended to 5 and interrupted after epoch 4: a plain --resume finishes the 5, as the saved state says.
    real = runs_mod.write_history

    def stop_after_four(path, rows, columns=None):
        if len(rows) == 5:
            raise KeyboardInterrupt
        real(path, rows, columns)

    monkeypatch.setattr(runs_mod, "write_history", stop_after_four)
    CliRunner().invoke(main, args + ["--epochs", "5"])
    monkeypatch.setattr(runs_mod, "write_history", real)
    assert len(_history(run)) == 4
    finished = CliRunner().invoke(main, args)
    assert finished.exit_code == 0, finished.output
    assert len(_history(run)) == 5


def test_resume_refuses_to_stretch_a_one_cycle_schedule(split_csv, tmp_path):
    run = train(_cfg(epochs=2, scheduler="onecycle"), SAMPLE, tmp_path / "run", split_csv, progress=False)
    before = (run / "history.csv").read_bytes()
    with pytest.raises(ConfigError, match="cannot be stretched"):
        train(_cfg(epochs=4, scheduler="onecycle"), SAMPLE, run, None, resume=True, progress=False)
    assert (run / "history.csv").read_bytes() == before


def test_a_new_best_on_resume_drops_the_old_best_ood_statistics(split_csv, tmp_path):
    from safetensors.torch import save_file

    run = train(_cfg(epochs=1), SAMPLE, tmp_path / "run", split_csv, progress=False)
    stale = run / "best.ood.safetensors"
    save_file({"mean": torch.zeros(3)}, str(stale))  # as if fitted on this best checkpoint
    state = load_state(run / "state.pt")
    state["best_val_loss"] = float("inf")  # so that epoch 2 is a new best for sure
    torch.save(state, run / "state.pt")
    train(_cfg(epochs=2), SAMPLE, run, None, resume=True, progress=False)
    # The sample is too small for the guard to be refitted, so no file is right; the old one would be wrong.
    assert not stale.exists()


def test_calibrate_refuses_a_run_being_written_and_reads_validated_metadata(split_csv, tmp_path):
    from lungxray.calibrate import calibrate_existing
    from lungxray.utils import output_lock

    run = train(_cfg(calibrate=False), SAMPLE, tmp_path / "run", split_csv, progress=False)
    before = (run / "best.json").read_bytes()
    with output_lock(run, "train"):  # a training still writing this run
        with pytest.raises(ConfigError, match="being written"):
            calibrate_existing(run, SAMPLE, progress=False)
    assert (run / "best.json").read_bytes() == before
    (run / "best.json").write_text('{"classes": ["COVID"]}')
    with pytest.raises(CheckpointError):
        calibrate_existing(run, SAMPLE, progress=False)


def test_calibrate_keeps_an_existing_calibration_unless_asked_and_says_when_it_skips(split_csv, tmp_path):
    from click.testing import CliRunner

    from lungxray.cli import main

    run = train(_cfg(calibrate=False), SAMPLE, tmp_path / "run", split_csv, progress=False)
    res = CliRunner().invoke(main, ["calibrate", str(run), "--data", str(SAMPLE)])
    assert res.exit_code == 0 and "skipped: fewer than 50 validation images" in res.output
    assert "OOD guard: not fitted" in res.output  # said, not left out silently
    res = CliRunner().invoke(main, ["calibrate", str(run), "--data", str(SAMPLE)])  # a skipped one is no loss
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "best.json").read_text())
    meta["temperature"] = 1.7  # as a calibration fitted on a larger validation split would leave it
    meta["calibration"]["method"] = "temperature scaling (NLL) on the validation split"
    (run / "best.json").write_text(json.dumps(meta))
    res = CliRunner().invoke(main, ["calibrate", str(run), "--data", str(SAMPLE)])
    assert res.exit_code == 2 and "already calibrated" in res.output and "--overwrite" in res.output
    assert json.loads((run / "best.json").read_text())["temperature"] == 1.7
    res = CliRunner().invoke(main, ["calibrate", str(run), "--data", str(SAMPLE), "--overwrite"])
    assert res.exit_code == 0 and json.loads((run / "best.json").read_text())["temperature"] == 1.0


def test_cli_resume_warns_only_about_settings_given_now_and_names_them(split_csv, tmp_path, caplog):
    from click.testing import CliRunner

    from lungxray.cli import main

    run = train(_cfg(epochs=2), SAMPLE, tmp_path / "run", split_csv, progress=False)  # 32 px, batch 8: not the defaults
    args = ["train", "--out", str(run), "--data", str(SAMPLE), "--resume"]
    with caplog.at_level("WARNING", logger="lungxray"):
        plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 0, plain.output
    assert "saved settings" not in caplog.text  # nothing was given, so nothing is ignored
    caplog.clear()
    with caplog.at_level("WARNING", logger="lungxray"):
        given = CliRunner().invoke(main, args + ["--lr", "0.5", "--batch-size", "8"])
    assert given.exit_code == 0, given.output
    assert "ignored now: lr = 0.5 (the run has 0.001)" in caplog.text
    assert "batch_size" not in caplog.text  # given, but the same as the run's


def test_overwrite_replaces_a_run_with_its_export_but_not_a_users_file_in_it(split_csv, tmp_path):
    from lungxray.export import export_onnx

    run = train(_cfg(), SAMPLE, tmp_path / "run", split_csv, progress=False)
    export_onnx(run, run / "model.onnx")  # writes model.onnx and model.json into the run
    (run / ".git").mkdir()  # someone's: hidden, but not a temporary file of ours
    with pytest.raises(ConfigError, match=r"files no lungxray run writes \(\.git/\)"):
        train(_cfg(), SAMPLE, run, split_csv, overwrite=True, progress=False)
    assert (run / ".git").is_dir() and (run / "model.json").is_file()
    (run / ".git").rmdir()
    train(_cfg(), SAMPLE, run, split_csv, overwrite=True, progress=False)
    assert not (run / "model.onnx").exists() and (run / "best.safetensors").is_file()


def test_calibration_that_cannot_fit_the_guard_removes_an_old_guard_file(split_csv, tmp_path):
    from lungxray.calibrate import calibrate_existing
    from lungxray.ood import guard_path

    run = train(_cfg(calibrate=False), SAMPLE, tmp_path / "run", split_csv, progress=False)
    guard_path(run).write_bytes(b"statistics of an earlier best checkpoint")
    meta = calibrate_existing(run, SAMPLE, progress=False)  # the sample is far below 50 images per split
    assert "ood" not in meta and not guard_path(run).exists()


@pytest.mark.parametrize("setting, message", [
    ({"model_args": {"foo": 1}}, "bad arguments for model 'cnn'"),
    ({"model": "mlp", "low_res_size": 16, "low_res_epochs": 1, "epochs": 2}, "progressive resizing needs"),
])
def test_overwrite_keeps_the_old_run_when_the_model_cannot_be_built(tmp_path, split_csv, setting, message):
    run = train(_cfg(), SAMPLE, tmp_path / "run", split_csv, progress=False)
    before = (run / "best.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=message):
        train(_cfg(**setting), SAMPLE, run, split_csv, overwrite=True, progress=False)
    assert (run / "best.safetensors").read_bytes() == before


def test_split_seed_with_a_manifest_is_refused_and_resume_names_a_split_it_does_not_use(split_csv, tmp_path, caplog):
    with pytest.raises(ConfigError, match="split_seed=5 draws a split made on the fly"):
        train(_cfg(split_seed=5), SAMPLE, tmp_path / "r", split_csv, progress=False)
    run = train(_cfg(), SAMPLE, tmp_path / "run", split_csv, progress=False)
    other = tmp_path / "other.csv"
    other.write_text(split_csv.read_text())
    with caplog.at_level("WARNING", logger="lungxray"):
        train(_cfg(), SAMPLE, run, other, resume=True, progress=False)
    assert "continues on the run's own split" in caplog.text and "other.csv is not used" in caplog.text


def test_a_forced_resume_on_changed_data_adds_what_it_now_trains_on_to_the_seen_list(split_csv, tmp_path):
    from lungxray.seen import read_seen

    run = train(_cfg(epochs=2), SAMPLE, tmp_path / "run", split_csv, progress=False)
    first = read_seen(run / "seen.json")
    text = (run / "split.csv").read_text()
    (run / "split.csv").write_text(text.replace(",test,", ",train,"))  # the test images now train the model
    with pytest.raises(ConfigError, match="changed since this run started"):
        train(_cfg(epochs=3), SAMPLE, run, None, resume=True, progress=False)
    train(_cfg(epochs=3), SAMPLE, run, None, resume=True, force=True, progress=False)
    now = read_seen(run / "seen.json")
    assert first["train"] < now["train"] and len(now["train"]) == len(first["train"]) + text.count(",test,")


def test_early_stopping_says_so(split_csv, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="lungxray"):
        run = train(_cfg(epochs=8, lr=0.5, early_stopping=1), SAMPLE, tmp_path / "run", split_csv, progress=False)
    epochs_run = len(_history(run))
    assert epochs_run < 8 and f"stopped early before epoch {epochs_run + 1} of 8" in caplog.text

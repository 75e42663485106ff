"""lungxray.evaluate: a checkpoint scored on one split of a manifest, and what it writes."""

import csv
import json
import shutil

import numpy as np
import pytest

from lungxray.data.api import split_dataset
from lungxray.errors import ConfigError
from lungxray.evaluate import evaluate_run, load_predictions


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, sample_dir):
    path = tmp_path_factory.mktemp("split") / "split.csv"
    split_dataset(sample_dir, path, seed=0, progress=False)
    return path


def _count(manifest, split):
    with open(manifest, newline="") as fh:
        return sum(row["split"] == split for row in csv.DictReader(fh))


def test_metrics_agree_with_the_predictions_written(tiny_run, manifest, sample_dir, tmp_path):
    m = evaluate_run(tiny_run / "best.safetensors", sample_dir, "test", manifest, tmp_path / "ev", n_bootstrap=50,
                     progress=False)
    y, probs, classes = load_predictions(tmp_path / "ev" / "predictions.csv")
    assert classes == ["COVID", "Normal", "Viral Pneumonia"]
    assert len(y) == m["n"] == _count(manifest, "test") > 0
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
    assert m["accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()), abs=1e-6)
    assert np.asarray(m["confusion_matrix"]).sum() == m["n"]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    for name in ("report.html", "confusion.png", "roc.png"):
        assert (tmp_path / "ev" / name).is_file(), name


def test_the_split_asked_for_is_the_one_scored(tiny_run, manifest, sample_dir, tmp_path):
    m = evaluate_run(tiny_run / "best.safetensors", sample_dir, "val", manifest, tmp_path / "val", n_bootstrap=0,
                     progress=False)
    assert m["n"] == _count(manifest, "val")
    with pytest.raises(ConfigError, match="split=holdout"):
        evaluate_run(tiny_run / "best.safetensors", sample_dir, "holdout", manifest, tmp_path / "x", progress=False)


def test_without_out_each_evaluation_gets_a_new_folder(tiny_run, manifest, sample_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copy(manifest, run / "split.csv")
    first = evaluate_run(run, sample_dir, n_bootstrap=0, progress=False)
    second = evaluate_run(run, sample_dir, n_bootstrap=0, progress=False)
    assert first["out"] == str(run / "eval-test") and second["out"] == str(run / "eval-test-2")
    assert first["accuracy"] == second["accuracy"]
    with pytest.raises(ConfigError, match="overwrite=True"):  # an explicit folder is never replaced silently
        evaluate_run(run, sample_dir, out=run / "eval-test", n_bootstrap=0, progress=False)


def test_overwrite_removes_the_completeness_marker_before_writing(tiny_run, manifest, sample_dir, tmp_path, monkeypatch):
    out = tmp_path / "ev"
    evaluate_run(tiny_run / "best.safetensors", sample_dir, "test", manifest, out, n_bootstrap=0, progress=False)
    assert (out / "metrics.json").is_file()
    import lungxray.evaluate as ev

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while the plots were drawn

    monkeypatch.setattr(ev, "plot_confusion", broken)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(tiny_run / "best.safetensors", sample_dir, "val", manifest, out, n_bootstrap=0, overwrite=True,
                     progress=False)
    assert not (out / "metrics.json").exists()  # the old one would describe the test split beside val predictions


def test_scoring_a_runs_own_training_images_from_another_manifest_warns(tiny_run, manifest, sample_dir, tmp_path,
                                                                     caplog):
    from dataclasses import replace

    from lungxray.data.split import read_manifest, write_manifest

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rows = read_manifest(manifest)
    write_manifest(run / "split.csv", rows)  # the run "trained" on this split
    same_test = write_manifest(tmp_path / "copy.csv", rows)
    everything = write_manifest(tmp_path / "all-test.csv", [replace(r, split="test") for r in rows])
    with caplog.at_level("WARNING", logger="lungxray.evaluate"):
        evaluate_run(run, sample_dir, "test", same_test, tmp_path / "a", n_bootstrap=0, progress=False)
        assert "not held-out" not in caplog.text  # its own test images, under another file name: fine
        evaluate_run(run, sample_dir, "test", everything, tmp_path / "b", n_bootstrap=0, progress=False)
    n_seen = sum(r.split in ("train", "val") for r in rows)
    assert f"{n_seen} of the {len(rows)} test images" in caplog.text and "not held-out" in caplog.text


def test_out_that_is_a_file_is_refused_and_left_alone(tiny_run, manifest, sample_dir, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(ConfigError, match="is a file"):
        evaluate_run(tiny_run / "best.safetensors", sample_dir, "test", manifest, target, n_bootstrap=0, progress=False)
    assert target.read_text() == "mine"


def test_the_shipped_model_is_scored_on_your_own_labelled_folders(tmp_path, sample_dir):
    """A researcher's first question: how does the default do on my images? A manifest that puts every image in
    test, then `evaluate default`."""
    from click.testing import CliRunner

    from lungxray.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["data", "split", str(sample_dir), "--out", str(tmp_path / "mine.csv"), "--val", "0", "--test", "1"])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "mine.csv", newline="") as fh:
        assert {r["split"] for r in csv.DictReader(fh)} == {"test"}
    res = runner.invoke(main, ["evaluate", "default", "--data", str(sample_dir), "--manifest", str(tmp_path / "mine.csv"),
                               "--out", str(tmp_path / "eval"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert "on test (30 images)" in res.output and (tmp_path / "eval" / "report.html").is_file()
    # The sample was drawn from the development data: 25 of its files are byte-identical to the shipped model's
    # training or validation images, and the scores must say they are not held out.
    seen = json.loads((tmp_path / "eval" / "metrics.json").read_text())["seen_by_model"]
    assert seen["checked"] and seen["images"] == 25 and seen["of"] == 30
    assert "25 of the 30 test images are byte-identical" in (tmp_path / "eval" / "report.html").read_text()


def test_bootstrap_zero_gives_no_interval_and_a_negative_count_is_refused(tiny_run, manifest, sample_dir, tmp_path):
    from click.testing import CliRunner

    from lungxray.cli import main

    base = ["evaluate", str(tiny_run / "best.safetensors"), "--data", str(sample_dir), "--manifest", str(manifest)]
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "e0"), "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    assert "(no interval: --bootstrap 0)" in res.output and "Traceback" not in res.output
    assert "No confidence intervals" in (tmp_path / "e0" / "report.html").read_text()
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "e1"), "--bootstrap", "-1"])
    assert res.exit_code == 2 and "--bootstrap" in res.output and not (tmp_path / "e1").exists()
    with pytest.raises(ConfigError, match="n_bootstrap=-1"):
        evaluate_run(tiny_run / "best.safetensors", sample_dir, "test", manifest, tmp_path / "e2", n_bootstrap=-1,
                     progress=False)
    assert not (tmp_path / "e2").exists()


def test_a_run_lists_what_it_saw_and_evaluate_says_when_scored_images_are_among_them(tiny_run, manifest, sample_dir,
                                                                                       tmp_path, caplog):
    from lungxray.config import load_config
    from lungxray.seen import read_seen, seen_path
    from lungxray.train import train

    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8})
    run = train(cfg, sample_dir, tmp_path / "run", manifest, progress=False)
    from lungxray.data.cache import file_digest

    seen = read_seen(seen_path(run / "best.safetensors"))
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for name in ("train", "val"):  # by content: identical files (the sample has some) are one entry
        assert seen[name] == {file_digest(sample_dir / r["path"])[:16] for r in rows if r["split"] == name}
    from lungxray.seen import write_seen_for_run

    written = (run / "seen.json").read_text()
    (run / "seen.json").unlink()
    write_seen_for_run(run, sample_dir, progress=False)  # for runs from before train wrote one: the same list
    assert (run / "seen.json").read_text() == written
    clean = evaluate_run(run, sample_dir, n_bootstrap=0, progress=False)
    assert clean["seen_by_model"] == {**clean["seen_by_model"], "checked": True, "images": 0}  # test is held out
    # Copies of training files under other names, in a folder scored as "test": found by content.
    copies = tmp_path / "mine"
    shutil.copytree(sample_dir, copies)
    train_rows = [r["path"] for r in rows if r["split"] == "train"]
    for rel in train_rows[:3]:
        src = copies / rel
        src.rename(src.with_name("renamed-" + src.name))
    split_all = tmp_path / "all-test.csv"
    from lungxray.data.api import split_dataset

    split_dataset(copies, split_all, fractions=(0.0, 0.0, 1.0), progress=False)
    with caplog.at_level("WARNING", logger="lungxray.evaluate"):
        m = evaluate_run(run / "best.safetensors", copies, "test", split_all, tmp_path / "e", n_bootstrap=0,
                         progress=False)
    n_seen = _count(manifest, "train") + _count(manifest, "val")  # the split keeps identical files on one side
    assert m["seen_by_model"]["images"] == n_seen and m["seen_by_model"]["by_split"]["train"] == _count(manifest, "train")
    assert f"{n_seen} of the 30 test images are byte-identical" in caplog.text


def test_a_split_without_one_class_says_so_in_the_terminal_the_metrics_and_the_report(tmp_path, sample_dir, caplog):
    from click.testing import CliRunner

    from lungxray.cli import main

    two = tmp_path / "two.csv"
    split_dataset(sample_dir, two, classes=["COVID", "Normal"], fractions=(0.0, 0.0, 1.0), progress=False)
    with caplog.at_level("WARNING", logger="lungxray"):
        res = CliRunner().invoke(main, ["evaluate", "default", "--data", str(sample_dir), "--manifest", str(two),
                                        "--out", str(tmp_path / "ev"), "--bootstrap", "10"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["classes_without_images"] == ["Viral Pneumonia"] and m["per_class"]["Viral Pneumonia"]["support"] == 0
    assert "no images of Viral Pneumonia" in caplog.text
    assert "Classes without images" in (tmp_path / "ev" / "report.html").read_text()

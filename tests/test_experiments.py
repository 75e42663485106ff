"""lungxray.experiments: several configs trained and scored on one shared split, compared, and resumed."""

import json

import pytest

from lungxray.errors import ConfigError
from lungxray.experiments import run_experiments


def _config(path, name, model, reference=None):
    ref = f"\n[reference]\naccuracy = {reference}\n" if reference is not None else ""
    path.write_text(f'description = "{name} on the sample"\nmodel = "{model}"\nimage_size = 32\nepochs = 1\n'
                    f'batch_size = 8\n{ref}')
    return path


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, sample_dir):
    tmp = tmp_path_factory.mktemp("exp")
    configs = [_config(tmp / "a-mlp.toml", "a", "mlp", reference=0.77), _config(tmp / "b-cnn.toml", "b", "cnn")]
    out = tmp / "out"
    rows = run_experiments(sample_dir, out, configs, progress=False)
    return out, configs, rows


def test_every_config_is_trained_scored_and_compared_on_one_split(experiment):
    out, _, rows = experiment
    assert [r["name"] for r in rows] == ["a-mlp", "b-cnn"]
    assert [r["model"] for r in rows] == ["mlp", "cnn"]
    assert rows[0]["reported_accuracy"] == 0.77 and rows[1]["reported_accuracy"] is None
    for r in rows:
        metrics = json.loads((out / r["name"] / "eval-test" / "metrics.json").read_text())
        assert r["accuracy"] == metrics["accuracy"] and r["n_test"] == metrics["n"] > 0
        # One shared split: every run trained on the same manifest.
        assert (out / r["name"] / "split.csv").read_text() == (out / "split.csv").read_text()
    for name in ("comparison.json", "comparison.md", "comparison.csv", "comparison.png", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    md = (out / "comparison.md").read_text()
    assert "| a-mlp |" in md and "77%" in md  # the study's reported figure beside ours


def test_finished_runs_are_reused_and_a_missing_evaluation_is_redone(experiment, sample_dir):
    out, configs, rows = experiment
    weights = out / "b-cnn" / "best.safetensors"
    trained_at = weights.stat().st_mtime_ns
    (out / "b-cnn" / "eval-test" / "metrics.json").unlink()  # as if killed while evaluating
    again = run_experiments(sample_dir, out, configs, progress=False)
    assert weights.stat().st_mtime_ns == trained_at  # not retrained
    assert (out / "b-cnn" / "eval-test" / "metrics.json").is_file()
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]  # same weights, same split, same scores


def test_no_configs_is_a_clear_error(tmp_path, sample_dir, monkeypatch):
    import lungxray.experiments as experiments

    monkeypatch.setattr(experiments, "SEED_CONFIGS", tmp_path / "none")
    with pytest.raises(ConfigError, match="no configs found"):
        run_experiments(sample_dir, tmp_path / "out", progress=False)


def test_a_finished_run_with_other_settings_or_split_is_not_reported_as_this_one(experiment, sample_dir, tmp_path):
    out, configs, rows = experiment
    with pytest.raises(ConfigError, match="other settings than asked now \\(epochs\\)"):
        run_experiments(sample_dir, out, configs, overrides={"epochs": 2}, progress=False)
    other = tmp_path / "other.csv"
    text = (out / "split.csv").read_text().splitlines()
    header, first = text[0], text[1].split(",")
    cols = header.split(",")
    first[cols.index("split")] = {"train": "val", "val": "test", "test": "train"}[first[cols.index("split")]]
    other.write_text("\n".join([header, ",".join(first), *text[2:]]) + "\n")
    with pytest.raises(ConfigError, match="another split"):
        run_experiments(sample_dir, out, configs, split_csv=other, progress=False)
    assert json.loads((out / "comparison.json").read_text())[0]["accuracy"] == rows[0]["accuracy"]  # left as it was


def test_two_configs_with_one_file_name_are_refused(tmp_path, sample_dir):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    configs = [_config(tmp_path / "x" / "cnn.toml", "x", "cnn"), _config(tmp_path / "y" / "cnn.toml", "y", "mlp")]
    with pytest.raises(ConfigError, match="two configs are named cnn.toml"):
        run_experiments(sample_dir, tmp_path / "out", configs, progress=False)
    assert not (tmp_path / "out" / "cnn").exists()


def test_a_cap_per_class_shapes_the_shared_split(tmp_path, sample_dir):
    from collections import Counter

    from lungxray.data.split import read_manifest

    configs = [_config(tmp_path / "a-mlp.toml", "a", "mlp")]
    rows = run_experiments(sample_dir, tmp_path / "out", configs, overrides={"per_class": 8}, progress=False)
    counts = Counter(r.label for r in read_manifest(tmp_path / "out" / "split.csv"))
    assert set(counts.values()) == {8} and rows[0]["n_test"] < 10  # 24 images in all: the test split is capped too
    with pytest.raises(ConfigError, match="has up to 8 images per class"):
        run_experiments(sample_dir, tmp_path / "out", configs, overrides={"per_class": 4}, progress=False)


def test_a_run_made_before_a_setting_existed_is_reused_as_having_its_default(experiment, sample_dir):
    out, configs, rows = experiment
    cfg_path = out / "b-cnn" / "config.json"
    ran = json.loads(cfg_path.read_text())
    assert ran.pop("read_size") == 0  # the run folder as a version before read_size wrote it
    cfg_path.write_text(json.dumps(ran))
    trained_at = (out / "b-cnn" / "best.safetensors").stat().st_mtime_ns
    again = run_experiments(sample_dir, out, configs, progress=False)
    assert (out / "b-cnn" / "best.safetensors").stat().st_mtime_ns == trained_at
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_a_folder_that_is_not_an_experiment_is_left_alone(tmp_path, sample_dir):
    mine = tmp_path / "mine"
    (mine / "eval-old").mkdir(parents=True)
    (mine / "report.html").write_text("my report")
    (mine / "notes.txt").write_text("mine")
    config = _config(tmp_path / "c.toml", "c", "cnn")
    with pytest.raises(ConfigError, match=r"holds files an experiment does not write \(eval-old/, notes.txt\)"):
        run_experiments(sample_dir, mine, [config], progress=False)
    assert (mine / "report.html").read_text() == "my report" and sorted(p.name for p in mine.iterdir()) == [
        "eval-old", "notes.txt", "report.html"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; out= must be a folder"):
        run_experiments(sample_dir, tmp_path / "file", [config], progress=False)


def test_a_users_lone_report_is_not_taken_for_an_earlier_experiment(tmp_path, sample_dir):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my report")
    with pytest.raises(ConfigError, match="not an earlier experiment's folder"):
        run_experiments(sample_dir, mine, [_config(tmp_path / "c.toml", "c", "cnn")], progress=False)
    assert (mine / "report.html").read_text() == "my report"


def test_an_experiment_stopped_before_its_first_run_is_continued(tmp_path, sample_dir, monkeypatch):
    import lungxray.experiments as experiments

    config = _config(tmp_path / "c.toml", "c", "cnn")

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "train", stop)
    with pytest.raises(KeyboardInterrupt):
        run_experiments(sample_dir, tmp_path / "exp", [config], progress=False)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["experiment.json", "split.csv"]
    monkeypatch.undo()
    rows = run_experiments(sample_dir, tmp_path / "exp", [config], progress=False)  # continued, not refused
    assert [r["name"] for r in rows] == ["c"]

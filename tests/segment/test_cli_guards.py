"""What `segment train|predict`, `data fill-masks|split` and `calibrate` refuse, so nothing the user had is lost and
no option is silently ignored (findings of the session-13 review, each reproduced first)."""

import shutil
from pathlib import Path

from click.testing import CliRunner

from lungxray.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
VP = SAMPLE / "Viral Pneumonia"
TINY = ["--image-size", "32", "--channels", "4,8,16", "--num-res-units", "1", "--epochs", "1", "--batch-size", "4"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_a_folder_that_is_not_a_run_or_holds_the_data(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(VP, project / "lungs")
    (project / "notes.txt").write_text("mine")
    before = _files(project)
    runner = CliRunner()
    # A project folder (no run files) given as --out: refused, everything kept.
    res = runner.invoke(main, ["segment", "train", "--data", str(project / "lungs"), "--out", str(project), "--overwrite", *TINY])
    assert res.exit_code == 2 and "not a lungxray run" in res.output and _files(project) == before
    # A typo in --data with --overwrite on a finished run: the data check comes first, the run is kept.
    run = tmp_path / "run"
    assert runner.invoke(main, ["segment", "train", "--holdout-data", str(VP), "--out", str(run), *TINY]).exit_code == 0
    kept = _files(run)
    res = runner.invoke(main, ["segment", "train", "--data", str(tmp_path / "lungz"), "--out", str(run), "--overwrite", *TINY])
    assert res.exit_code == 2 and "no such folder" in res.output and _files(run) == kept
    # A run folder that holds the training data: overwrite would delete the data, so it is refused.
    shutil.copytree(VP, run / "data")
    res = runner.invoke(main, ["segment", "train", "--data", str(run / "data"), "--out", str(run), "--overwrite", *TINY])
    assert res.exit_code == 2 and "an input of this run" in res.output and (run / "data" / "images").is_dir()


def test_segment_train_refuses_options_it_would_ignore_and_a_folder_used_twice(tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "r")
    for args, message in [
        (["--data", str(VP), "--holdout-frac", "0.5"], "split a --holdout-data folder"),
        (["--data", str(VP), "--split-seed", "3"], "split a --holdout-data folder"),
        (["--data", str(VP), "--max-pairs", "0"], "--max-pairs"),
        (["--data", str(VP), "--threads", "-1"], "--threads"),
        (["--data", str(VP), "--lr", "nan"], "lr a number > 0"),
        (["--data", str(VP), "--val", str(VP)], "overlaps"),
        (["--holdout-data", str(VP), "--val", str(VP / "images")], "overlaps"),
    ]:
        res = runner.invoke(main, ["segment", "train", *args, "--out", out, *TINY])
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert "Traceback" not in res.output
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_segment_train_without_validation_says_so(tmp_path, caplog):
    from lungxray.segment import SegTrainConfig, train_segmenter

    cfg = SegTrainConfig.from_dict({"image_size": 32, "channels": [4, 8, 16], "num_res_units": 1, "epochs": 1, "batch_size": 4})
    with caplog.at_level("WARNING", logger="lungxray"):
        train_segmenter(cfg, [VP], tmp_path / "r", progress=False)
    assert "no validation pairs" in caplog.text


def test_segment_predict_never_writes_over_an_input_image(tmp_path):
    folder = tmp_path / "xrays"
    folder.mkdir()
    shutil.copy(SAMPLE / "Normal" / "images" / "Normal-12.png", folder)
    before = _files(folder)
    res = CliRunner().invoke(main, ["segment", "predict", str(folder), "--out", str(folder), "--overwrite"])
    assert res.exit_code == 2 and "one of the input images" in res.output and _files(folder) == before


def test_segment_predict_refuses_to_replace_an_overlay_and_bad_sizes(tmp_path):
    image = SAMPLE / "Normal" / "images" / "Normal-12.png"
    out = tmp_path / "out"
    out.mkdir()
    (out / "Normal-12_overlay.png").write_bytes(b"my earlier overlay")
    res = CliRunner().invoke(main, ["segment", "predict", str(image), "--out", str(out), "--overlay"])
    assert res.exit_code == 2 and "Normal-12_overlay.png exists" in res.output
    assert (out / "Normal-12_overlay.png").read_bytes() == b"my earlier overlay"
    for size in ("-3", "0", "100000"):
        res = CliRunner().invoke(main, ["segment", "predict", str(image), "--out", str(tmp_path / "o"), "--size", size])
        assert res.exit_code == 2 and "--size" in res.output and "Traceback" not in res.output
    (tmp_path / "afile").write_text("x")
    res = CliRunner().invoke(main, ["segment", "predict", str(image), "--out", str(tmp_path / "afile")])
    assert res.exit_code == 2 and "is a file" in res.output


def test_fill_masks_names_two_images_that_would_write_one_mask(tmp_path):
    root = tmp_path / "radiography"
    shutil.copytree(SAMPLE, root)
    normal = root / "Normal" / "images"
    from PIL import Image

    Image.open(normal / "Normal-12.png").convert("L").save(normal / "Normal-12.jpg")
    res = CliRunner().invoke(main, ["data", "fill-masks", str(root), "--dry-run"])
    assert res.exit_code == 1
    assert "Normal-12.jpg and Normal-12.png would both write this mask" in res.output
    assert "would write Normal/masks/Normal-12.png" not in res.output


def test_data_split_refuses_a_manifest_without_a_class_and_warns_about_empty_parts(tmp_path, caplog):
    bad = tmp_path / "bad"
    for c in ("COVID", "Normal"):
        (bad / c / "images").mkdir(parents=True)
        (bad / c / "images" / "x.png").write_bytes(b"not a png")
    res = CliRunner().invoke(main, ["data", "split", str(bad), "--out", str(tmp_path / "s.csv"), "--classes", "COVID,Normal"])
    assert res.exit_code == 2 and "no readable image of class" in res.output and not (tmp_path / "s.csv").exists()
    res = CliRunner().invoke(main, ["data", "split", str(SAMPLE), "--out", str(tmp_path), "--overwrite"])
    assert res.exit_code == 2 and "is a folder" in res.output
    res = CliRunner().invoke(main, ["data", "split", str(SAMPLE), "--out", str(tmp_path / "s.csv"), "--seed", "-1"])
    assert res.exit_code == 2 and "--seed" in res.output
    from lungxray.data.api import split_dataset

    with caplog.at_level("WARNING", logger="lungxray"):
        split_dataset(SAMPLE, tmp_path / "p.csv", per_class=2, progress=False)
    assert "the val split has no image of" in caplog.text


def test_failed_write_names_the_final_file_and_offers_resume_only_where_it_exists(tmp_path, monkeypatch):
    import errno

    import lungxray.data
    import lungxray.train
    from lungxray.cli_errors import _final_name

    assert _final_name("/x/y/.split.csv.k2j3l.tmp") == "/x/y/split.csv"
    assert _final_name(".a.b.safetensors.q1.tmp") == "a.b.safetensors"
    assert _final_name("/x/Normal-12.png") == "/x/Normal-12.png"

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".s.csv.x1y2.tmp"))

    monkeypatch.setattr(lungxray.data, "split_dataset", disk_full)  # data split has no --resume
    res = CliRunner().invoke(main, ["data", "split", str(SAMPLE), "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 2 and f"{tmp_path / 's.csv'}: No space left" in res.output
    assert ".tmp" not in res.output and "--resume" not in res.output
    monkeypatch.setattr(lungxray.train, "train", disk_full)  # train has one
    res = CliRunner().invoke(main, ["train", "--data", str(SAMPLE), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "rerun with --resume" in res.output


def test_overwrite_is_not_offered_for_a_folder_it_would_refuse(tmp_path):
    (tmp_path / "project" / "x").mkdir(parents=True)
    res = CliRunner().invoke(main, ["segment", "train", "--data", str(VP), "--out", str(tmp_path / "project"), *TINY])
    assert res.exit_code == 2 and "not a lungxray run" in res.output and "--overwrite" not in res.output


def test_segment_predict_refuses_two_inputs_that_would_write_one_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE / "Normal" / "images" / "Normal-12.png", folder / "a.png")
    shutil.copy(SAMPLE / "Normal" / "images" / "Normal-12.png", folder / "a_overlay.png")
    res = CliRunner().invoke(main, ["segment", "predict", str(folder), "--out", str(tmp_path / "o"), "--overlay"])
    assert res.exit_code == 2 and "would both write" in res.output and "a_overlay.png" in res.output
    assert not (tmp_path / "o").exists()


def test_data_folders_may_be_given_with_a_tilde(tmp_path, monkeypatch):
    from lungxray.segment.train import _check_sources

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(VP, tmp_path / "lungs")
    _check_sources(["~/lungs"], [], [])  # no "no such folder"


def test_overwrite_never_deletes_a_folder_that_only_looks_like_a_run(tmp_path):
    # A project folder that happens to hold a config.json (one of the run markers) and the user's own files.
    project = tmp_path / "proj"
    (project / "notes").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "data.csv").write_text("a,b\n")
    (project / "notes" / "thesis.txt").write_text("years of work")
    before = _files(project)
    res = CliRunner().invoke(main, ["segment", "train", "--holdout-data", str(VP), "--out", str(project), "--overwrite", *TINY])
    assert res.exit_code == 2 and "files no lungxray run writes (data.csv, notes/)" in res.output
    assert _files(project) == before
    # A real run, with what later commands add to it (an evaluation folder, an ONNX export), is replaced.
    run = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(main, ["segment", "train", "--holdout-data", str(VP), "--out", str(run), *TINY]).exit_code == 0
    (run / "eval-test").mkdir()
    (run / "best.onnx").write_bytes(b"onnx")
    res = runner.invoke(main, ["segment", "train", "--holdout-data", str(VP), "--out", str(run), "--overwrite", *TINY])
    assert res.exit_code == 0, res.output
    assert not (run / "eval-test").exists() and (run / "best.safetensors").is_file()


def test_impossible_unet_channels_are_refused_before_the_run_folder_is_made(tmp_path):
    tiny = [a for a in TINY if a != "4,8,16"]
    tiny.remove("--channels")
    for channels, message in [("0,8", "whole numbers >= 1"), ("-4,8", "whole numbers >= 1"), ("4", "at least 2 levels")]:
        out = tmp_path / f"r{channels}"
        res = CliRunner().invoke(main, ["segment", "train", "--data", str(VP), "--out", str(out), "--channels", channels, *tiny])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (channels, res.output)
        assert not out.exists()  # nothing left behind that a corrected rerun would trip over


def test_segment_predict_on_a_folder_of_folders_says_where_to_point_it(tmp_path):
    res = CliRunner().invoke(main, ["segment", "predict", str(SAMPLE), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "holds no image files directly inside it" in res.output and "images" in res.output


def test_segment_predict_of_only_unreadable_files_leaves_no_empty_folder(tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "a.png").write_text("not an image")
    out = tmp_path / "masks"
    res = CliRunner().invoke(main, ["segment", "predict", str(bad), "--out", str(out)])
    assert "a.png" in res.output and not out.exists()
    existing = tmp_path / "mine"
    existing.mkdir()  # a folder the user made stays, even empty
    CliRunner().invoke(main, ["segment", "predict", str(bad), "--out", str(existing)])
    assert existing.is_dir()

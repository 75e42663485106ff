"""Tests for the `lungxray data inspect` / `lungxray data split` commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lungxray.cli import main
from lungxray.data import read_manifest


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:  # click < 8.2 without mix_stderr=False
        return result.output


def test_inspect_prints_classes_and_near_duplicates(runner: CliRunner, sample_dir: Path) -> None:
    result = runner.invoke(main, ["data", "inspect", str(sample_dir)])
    assert result.exit_code == 0, result.output
    out = result.output
    for cls in ("COVID", "Normal", "Viral Pneumonia"):
        assert any(line.startswith(cls + " ") for line in out.splitlines()), f"{cls} row missing:\n{out}"
    assert "images: 30" in out
    assert "copies of one radiograph (re-exports included; detail similarity >= 0.68, or dHashes within 4 bits): 8 images in 4 groups, 4 pairs (3 identical in detail" in out
    assert "COVID-1126.png" in out and "COVID-90.png" in out
    assert "Traceback" not in out


def test_inspect_table_counts(runner: CliRunner, sample_dir: Path) -> None:
    out = runner.invoke(main, ["data", "inspect", str(sample_dir)]).output
    rows = [line.split() for line in out.splitlines() if line.startswith(("COVID ", "Normal ", "Viral Pneumonia "))]
    # class, folder, images, readable, masks, near-dup
    covid = next(r for r in rows if r[0] == "COVID")
    vp = next(r for r in rows if r[0] == "Viral")
    assert covid[2:6] == ["10", "10", "0", "6"]
    assert vp[4:8] == ["10", "10", "10", "2"]


def test_inspect_json(runner: CliRunner, sample_dir: Path) -> None:
    result = runner.invoke(main, ["data", "inspect", str(sample_dir), "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["classes"] == ["COVID", "Normal", "Viral Pneumonia"]
    assert {c: v["images"] for c, v in rep["per_class"].items()} == {"COVID": 10, "Normal": 10, "Viral Pneumonia": 10}
    assert {c: v["with_mask"] for c, v in rep["per_class"].items()} == {"COVID": 0, "Normal": 0, "Viral Pneumonia": 10}
    assert rep["near_duplicates"]["pairs"] == 4 and rep["near_duplicates"]["groups"] == 4
    assert rep["unreadable"] == []


def test_inspect_classes_option(runner: CliRunner, sample_dir: Path) -> None:
    result = runner.invoke(main, ["data", "inspect", str(sample_dir), "--json", "--classes", "covid, NORMAL"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert list(rep["per_class"]) == ["COVID", "Normal"]
    assert rep["ignored_class_folders"] == ["Viral Pneumonia"]


def test_split_writes_manifest(runner: CliRunner, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    result = runner.invoke(main, ["data", "split", str(sample_dir), "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["path", "mask_path", "label", "split", "group"]
        rows = list(reader)
    assert len(rows) == 30
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert f"wrote {out} (30 rows" in result.output
    assert "across splits: 0" in result.output
    assert read_manifest(out) is not None


def test_split_fractions_options(runner: CliRunner, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    result = runner.invoke(main, ["data", "split", str(sample_dir), "--out", str(out), "--val", "0", "--test", "0.5"])
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    assert not any(r.split == "val" for r in rows)
    assert 12 <= sum(r.split == "test" for r in rows) <= 18


def test_split_refuses_existing_out(runner: CliRunner, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    out.write_text("keep me\n")
    result = runner.invoke(main, ["data", "split", str(sample_dir), "--out", str(out)])
    assert result.exit_code == 2
    assert "error:" in _stderr(result) and "--overwrite" in _stderr(result)
    assert out.read_text() == "keep me\n"
    result = runner.invoke(main, ["data", "split", str(sample_dir), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0 and len(read_manifest(out)) == 30


@pytest.mark.parametrize("command", ["inspect", "split"])
def test_nonexistent_path_is_a_one_line_error(runner: CliRunner, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nowhere"
    args = ["data", command, str(missing)] + (["--out", str(tmp_path / "s.csv")] if command == "split" else [])
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    err = _stderr(result).strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert "nowhere" in err and "no such file or folder" in err
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), "only a clean exit, no other exception"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "COVID,Norml"], "Did you mean 'Normal'"),
        (["--val", "0.6", "--test", "0.6"], "split fractions"),
        (["--per-class", "-2"], "--per-class -2: must be a positive number"),
    ],
)
def test_split_user_errors_exit_2(runner: CliRunner, sample_dir: Path, tmp_path: Path, args, message: str) -> None:
    result = runner.invoke(main, ["data", "split", str(sample_dir), "--out", str(tmp_path / "s.csv"), *args])
    assert result.exit_code == 2, result.output
    assert message in _stderr(result)
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_misspelt_option_suggests(runner: CliRunner, sample_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(main, ["data", "split", str(sample_dir), "--out", str(tmp_path / "s.csv"), "--seeed", "3"])
    assert result.exit_code == 2
    assert "No such option" in result.output and "Did you mean '--seed'" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_split_requires_out(runner: CliRunner, sample_dir: Path) -> None:
    result = runner.invoke(main, ["data", "split", str(sample_dir)])
    assert result.exit_code == 2 and "--out" in result.output


def test_inspect_warns_when_classes_differ_in_size_mode_or_masks(runner: CliRunner, sample_dir: Path) -> None:
    out = runner.invoke(main, ["data", "inspect", str(sample_dir)]).output
    # the sample keeps the database's quirks: COVID/Normal 224 px RGB, Viral Pneumonia 299 px grayscale with masks
    assert "warning: image size differs by class" in out and "299x299" in out
    assert "warning: image mode (colour, bit depth) differs by class" in out
    assert "warning: lung masks are provided for some classes only" in out and "Viral Pneumonia: 100%" in out

"""Red-team findings of issue 16 that are fixed: each test fails on the code before the fix."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from lungxray.checkpoint import load_state
from lungxray.errors import CheckpointError
from lungxray.predict import discover_inputs
from lungxray.predict.writer import _csv_text, _resume_rows, csv_safe, csv_unsafe


# ------------------------------------------------------------------------- 2. symlink loops, FIFOs
def test_symlink_loop_in_a_folder_is_skipped_with_a_warning(tmp_path: Path, sample_dir: Path, caplog) -> None:
    folder = tmp_path / "mix"
    folder.mkdir()
    shutil.copy(sample_dir / "Normal" / "images" / "Normal-12.png", folder / "x.png")
    os.symlink("loopB", folder / "loopA")
    os.symlink("loopA", folder / "loopB")
    with caplog.at_level(logging.WARNING):
        found = discover_inputs([folder])
    assert [f.path.name for f in found] == ["x.png"]
    assert "loopA" in caplog.text and "loopB" in caplog.text


def test_a_fifo_named_explicitly_is_reported(tmp_path: Path, sample_dir: Path, caplog) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    image = sample_dir / "Normal" / "images" / "Normal-12.png"
    with caplog.at_level(logging.WARNING):
        found = discover_inputs([image, fifo])
    assert [f.path for f in found] == [image]
    assert "pipe.png" in caplog.text and "not a regular file" in caplog.text


# ------------------------------------------------------------------------- 3. CSV formula injection
@pytest.mark.parametrize("name", ['=HYPERLINK("http:__evil","x").png', "+1.png", "-1.png", "@x.png", "\tx.png",
                                  "\rx.png", "'=x.png", "plain.png", "dir/=x.png"])
def test_csv_cells_cannot_start_a_formula_and_resume_reads_them_back(tmp_path: Path, name: str) -> None:
    safe = csv_safe(name)
    assert not safe.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert csv_unsafe(safe) == name
    classes = ["A", "B"]
    row = {"path": name, "name": name, "prediction": "A", "probability": 0.9, "probabilities": {"A": 0.9, "B": 0.1}}
    (tmp_path / "predictions.csv").write_text(_csv_text([row], classes), encoding="utf-8")
    rows = _resume_rows(tmp_path / "predictions.csv", tmp_path / "none.json", classes, {})
    assert rows[0]["path"] == name


# ------------------------------------------------------------------------- 6. empty / pickled state files
def test_empty_state_file_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state(tmp_path / "state.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_state_is_refused_in_our_own_words(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save({"model": {}, "x": _Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        load_state(path)
    msg = str(err.value)
    assert "refused" in msg and "pickled" in msg and "weights_only" not in msg and "Re-running" not in msg


# ------------------------------------------------------------------------- issue 15: default output folders
def test_next_free_folder_never_reuses_a_taken_one(tmp_path: Path) -> None:
    from lungxray.utils import next_free_folder

    base = tmp_path / "test_results"
    assert next_free_folder(base) == base
    base.mkdir()
    assert next_free_folder(base) == base  # empty: usable
    (base / "x").write_text("kept")
    assert next_free_folder(base) == tmp_path / "test_results-2"
    (tmp_path / "test_results-2").mkdir()
    (tmp_path / "test_results-2" / "y").write_text("kept")
    assert next_free_folder(base) == tmp_path / "test_results-3"
    assert (base / "x").read_text() == "kept"


# ------------------------------------------------------------------------- 7, 8: trusted state, changed splits
def _tiny_cfg(**kw):
    from lungxray.config import load_config

    return load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1, "batch_size": 8, "calibrate": False, **kw})


@pytest.fixture()
def tiny_training(tmp_path: Path, sample_dir: Path):
    from lungxray.data.api import split_dataset
    from lungxray.train import train

    split_dataset(sample_dir, tmp_path / "split.csv", seed=0, progress=False)
    run = train(_tiny_cfg(), sample_dir, tmp_path / "run", tmp_path / "split.csv", progress=False)
    return run, sample_dir


def test_resume_refuses_an_edited_split_unless_forced(tiny_training) -> None:
    from lungxray.errors import ConfigError
    from lungxray.train import train

    run, data = tiny_training
    lines = (run / "split.csv").read_text().splitlines()
    (run / "split.csv").write_text("\n".join(lines[: len(lines) // 2 + 1]) + "\n")  # drop half the rows
    with pytest.raises(ConfigError, match="changed since this run started"):
        train(_tiny_cfg(epochs=2), data, run, resume=True, progress=False)
    train(_tiny_cfg(epochs=2), data, run, resume=True, progress=False, force=True)
    assert (run / "history.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_resume_refuses_altered_or_non_finite_weights(tiny_training) -> None:
    from lungxray.checkpoint import tensors_digest
    from lungxray.train import train

    run, data = tiny_training
    state = torch.load(run / "state.pt", weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name].fill_(float("nan"))
    torch.save(state, run / "state.pt")
    with pytest.raises(CheckpointError, match="checksum"):
        train(_tiny_cfg(epochs=2), data, run, resume=True, progress=False)
    state["model_sha256"] = tensors_digest(state["model"])  # a consistent file that still holds NaN
    torch.save(state, run / "state.pt")
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        train(_tiny_cfg(epochs=2), data, run, resume=True, progress=False)


def test_a_loss_that_goes_non_finite_stops_training_and_says_so(tmp_path: Path, sample_dir: Path) -> None:
    from lungxray.data.api import split_dataset
    from lungxray.errors import TrainingError
    from lungxray.train import train

    split_dataset(sample_dir, tmp_path / "split.csv", seed=0, progress=False)
    with pytest.raises(TrainingError, match="non-finite"):
        train(_tiny_cfg(optimizer="sgd", lr=1e30, momentum=0.0), sample_dir, tmp_path / "run", tmp_path / "split.csv",
              progress=False)
    assert not (tmp_path / "run" / "best.safetensors").exists()


# ------------------------------------------------------------------------- 9, 10, 11: metadata and weights at load
@pytest.mark.parametrize(
    "change, field",
    [
        ({"temperature": -1}, "temperature"), ({"temperature": 0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"), ({"temperature": "hot"}, "temperature"),
        ({"image_size": [100000, 100000]}, "image_size"), ({"image_size": "abc"}, "image_size"),
        ({"model": None}, "model"), ({"masks": "weird"}, "masks"),
        ({"classes": ["A", "A", "B"]}, "classes"), ({"lung_view": {"crop": "yes"}}, "lung_view"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field(tiny_run: Path, tmp_path: Path, change: dict, field: str) -> None:
    import json

    from lungxray.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta = json.loads((run / "best.json").read_text())
    meta.update(change)
    (run / "best.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"'{field}'"):
        load_checkpoint(run)


def test_metadata_that_is_not_an_object_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    from lungxray.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "best.json").write_text("[1, 2, 3]")
    with pytest.raises(CheckpointError, match="JSON object"):
        load_checkpoint(run)


def test_nan_weights_never_load(tiny_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from lungxray.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    tensors = load_file(run / "best.safetensors")
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, run / "best.safetensors", metadata={"format": "lungxray-checkpoint/1"})
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        load_checkpoint(run)


# ------------------------------------------------------------------------- 4, 5: output folders
def test_unwritable_or_file_out_is_refused_before_any_work(tmp_path: Path) -> None:
    from lungxray.errors import ConfigError
    from lungxray.utils import check_output_folder

    afile = tmp_path / "afile.txt"
    afile.write_text("mine")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_folder(afile)
    assert afile.read_text() == "mine"
    with pytest.raises(ConfigError, match="cannot write there"):
        check_output_folder(afile / "sub")  # a folder below a file can never be made
    assert check_output_folder(tmp_path / "new" / "deep").is_dir()


def test_second_writer_of_an_output_folder_is_refused(tmp_path: Path) -> None:
    from lungxray.errors import ConfigError
    from lungxray.utils import output_lock

    out = tmp_path / "same"
    with output_lock(out, "predict"):
        with pytest.raises(ConfigError, match="being written by another lungxray predict"):
            with output_lock(out, "predict"):
                pass
    with output_lock(out, "predict"):  # released when the first run ends
        assert (tmp_path / ".same.lungxray-lock").is_file()
    assert not out.exists() or not any(out.iterdir())  # the lock lives beside the folder, not in it
    assert not (tmp_path / ".same.lungxray-lock").exists()  # and is removed when the command ends


def test_a_lock_file_removed_by_the_previous_holder_is_replaced_not_shared(tmp_path: Path, monkeypatch) -> None:
    # The holder before us unlinks its lock file after we opened it and before we locked it: our lock is on a file
    # nobody else will open, so output_lock must take a fresh one (else two writers could each hold "the" lock).
    import fcntl

    from lungxray.utils import output_lock

    out = tmp_path / "same"
    lock = tmp_path / ".same.lungxray-lock"
    real = fcntl.flock
    calls = []

    def flock(fh, op):
        calls.append(op)
        if len(calls) == 1:
            lock.unlink()  # what the previous holder does as it ends
        return real(fh, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with output_lock(out, "predict"):
        assert len(calls) == 2 and lock.is_file()  # locked again, on the file now at the path
    assert not lock.exists()


def test_predict_into_a_file_fails_in_one_line(tmp_path: Path, sample_dir: Path) -> None:
    from click.testing import CliRunner

    from lungxray.cli import main

    afile = tmp_path / "afile.txt"
    afile.write_text("mine")
    res = CliRunner().invoke(main, ["predict", str(sample_dir / "Normal" / "images" / "Normal-12.png"),
                                    "--out", str(afile)])
    assert res.exit_code == 2 and "is a file" in res.output and "Traceback" not in res.output
    assert afile.read_text() == "mine"

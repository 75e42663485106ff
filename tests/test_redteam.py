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
from lungxray.predict import _csv_text, _resume_rows, csv_safe, csv_unsafe, discover_inputs


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

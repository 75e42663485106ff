"""Nothing lost: `kill -9` during training, then `--resume`, ends exactly where an uninterrupted run ends,
and no kill ever leaves a file under its final name that is only half written.

The runs are real `python -m lungxray train` processes on the bundled sample at 32 px (about a minute in
all on two busy cores); each uses one thread so the reference and the killed run compute identically.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import load_file

from lungxray.checkpoint import load_checkpoint, load_state

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"
EPOCHS = 4
COMPARED = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def _start(out: Path, log: Path, env: dict, resume: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lungxray", "train", "--data", str(SAMPLE), "--out", str(out), "--model", "cnn",
           "--image-size", "32", "--batch-size", "8", "--epochs", str(EPOCHS), "--seed", "7", "--augment",
           "--scheduler", "cosine", "--set", "threads=1"]
    if resume:
        cmd.append("--resume")
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def _history(run: Path) -> list[dict]:
    if not (run / "history.csv").is_file():
        return []
    with open(run / "history.csv", newline="") as fh:
        return [{k: r[k] for k in COMPARED} for r in csv.DictReader(fh)]


def _wait(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert rc == 0, log.read_text(errors="replace")[-3000:]


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def assert_no_half_written_files(run: Path) -> None:
    """Every file under a final name is complete: JSON parses, weights and state load, CSV rows are whole,
    PNGs decode. Leftovers of interrupted writes may exist only as hidden `.<name>.<random>.tmp` files."""
    for p in sorted(run.iterdir()):
        if p.name.startswith("."):
            assert p.name.endswith(".tmp"), f"unexpected hidden file {p.name}"
            continue
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        elif p.suffix == ".safetensors":
            load_file(p)
        elif p.name == "state.pt":
            load_state(p)
        elif p.suffix == ".csv":
            with open(p, newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows and all(len(r) == len(rows[0]) for r in rows), f"{p.name} has a torn row"
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.load()
        assert not p.name.endswith(".tmp"), f"temporary file visible under a final name: {p.name}"
    for which in ("best", "last"):
        if (run / f"{which}.json").is_file() and (run / f"{which}.safetensors").is_file():
            load_checkpoint(run, which)


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "LUNGXRAY_CACHE": str(tmp_path / "cache"), "PYTHONHASHSEED": "0"}
    log = tmp_path / "train.log"
    ref_dir, run = tmp_path / "reference", tmp_path / "run"
    reference = _start(ref_dir, tmp_path / "reference.log", env)  # runs alongside the killed one
    try:
        # 1. Kill as soon as history.csv shows a finished epoch.
        proc = _start(run, log, env)
        deadline = time.monotonic() + 300
        while len(_history(run)) < 1:
            assert proc.poll() is None, f"training ended before it could be killed:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "no epoch finished in 300 s"
            time.sleep(0.02)
        _kill(proc)
        assert_no_half_written_files(run)
        assert (run / "state.pt").is_file()
        _wait(reference, tmp_path / "reference.log")
    finally:
        _kill(reference)
    expected = _history(ref_dir)
    assert [r["epoch"] for r in expected] == [str(e) for e in range(1, EPOCHS + 1)]

    # 2. Resume, but kill again at random moments (seeded, so a failure can be replayed).
    rng = random.Random(8)
    for _ in range(2):
        proc = _start(run, log, env, resume=True)
        time.sleep(rng.uniform(0.5, 8.0))
        _kill(proc)
        assert_no_half_written_files(run)
        seen = _history(run)
        assert seen == expected[: len(seen)], "a resumed epoch differs from the uninterrupted run"

    # 3. Resume to the end: the same history and bit-identical final weights.
    _wait(_start(run, log, env, resume=True), log)
    assert _history(run) == expected
    got, want = load_file(run / "last.safetensors"), load_file(ref_dir / "last.safetensors")
    assert got.keys() == want.keys() and all(got[k].equal(want[k]) for k in want)
    assert_no_half_written_files(run)
    assert not list(run.glob(".*.tmp")), "temporary files left behind after a successful resume"
    for name in ("summary.json", "curves.png", "best.safetensors"):
        assert (run / name).is_file(), name


def test_resume_without_any_saved_epoch_says_how_to_restart(tmp_path):
    from lungxray.config import load_config
    from lungxray.errors import ConfigError
    from lungxray.train import train

    run = tmp_path / "run"
    run.mkdir()
    (run / "split.csv").write_text("path,label,split\n")  # as if killed while the data was being read
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 1})
    with pytest.raises(ConfigError, match="overwrite=True"):
        train(cfg, SAMPLE, run, resume=True, progress=False)


# ----------------------------------------------------------------- existing outputs need --overwrite
def test_evaluate_audit_and_export_refuse_existing_outputs_before_any_work(tmp_path):
    from click.testing import CliRunner

    from lungxray.audit import audit_run
    from lungxray.cli import main
    from lungxray.errors import ConfigError
    from lungxray.evaluate import evaluate_run
    from lungxray.export import export_onnx

    run = tmp_path / "run"  # no checkpoint at all: the refusal must come before anything is loaded
    for sub in ("eval-test", "audit-test"):
        (run / sub).mkdir(parents=True)
        (run / sub / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="overwrite=True"):
        evaluate_run(run, SAMPLE, "test", out=run / "eval-test", progress=False)
    with pytest.raises(ConfigError, match="overwrite=True"):
        audit_run(run, SAMPLE, "test", out=run / "audit-test", progress=False)
    res = CliRunner().invoke(main, ["evaluate", str(run), "--data", str(SAMPLE), "--out", str(run / "eval-test")])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert (run / "eval-test" / "metrics.json").read_text() == "{}"
    (tmp_path / "model.json").write_text("{}")  # the metadata written beside an export is an output too
    with pytest.raises(ConfigError, match="model.json exists"):
        export_onnx(run, tmp_path / "model.onnx")


def test_report_writers_leave_no_temporary_files(tmp_path):
    from lungxray.report.html import write_report
    from lungxray.report.plots import plot_history

    rows = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.4, "lr": 1e-3}]
    png = plot_history(rows, tmp_path / "curves.png")
    page = write_report(tmp_path / "report.html", title="t", sections=[{"heading": "h", "images": [png]}])
    with Image.open(png) as im:
        im.load()
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "report.html"]


@pytest.mark.parametrize("n_epochs", [1, 2, 3])
def test_short_runs_get_whole_epoch_ticks(n_epochs):
    import matplotlib.pyplot as plt

    from lungxray.report.plots import history_figure

    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_acc": 0.5, "val_acc": 0.4, "lr": 1e-3}
            for e in range(1, n_epochs + 1)]
    fig = history_figure(rows)
    try:
        for ax in fig.axes[:2]:  # loss and accuracy (the third is the learning rate's twin y axis)
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            assert set(range(1, n_epochs + 1)) <= set(int(t) for t in ticks)
    finally:
        plt.close(fig)

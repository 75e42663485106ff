"""DDP on CPU (gloo): two processes launched by torchrun reproduce a single-process run."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lungxray.config import load_config
from lungxray.data.api import split_dataset
from lungxray.train import train

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radiography-sample"
TOLERANCE = 1e-4  # summation order differs across ranks; everything else is identical


def _history(run):
    with open(run / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_two_process_ddp_matches_single_process(tmp_path):
    split_dataset(SAMPLE, tmp_path / "split.csv", seed=0, progress=False)
    settings = ["--model", "cnn", "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--augment",
                "--set", "model_args={dropout=0.0}",  # dropout masks are per rank, so switch it off to compare exactly
                "--set", "mixup=0.4"]  # blends and partners are drawn for the global batch, then sharded
    cmd = [sys.executable, "-m", "lungxray", "train", "--data", str(SAMPLE), "--split", str(tmp_path / "split.csv"),
           "--out", str(tmp_path / "ddp"), "--nproc", "2", *settings]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("run saved in") == 1  # rank 0 alone reports and writes
    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 2, "batch_size": 8, "augment": True,
                             "model_args": {"dropout": 0.0}, "mixup": 0.4})
    single = train(cfg, SAMPLE, tmp_path / "single", tmp_path / "split.csv", progress=False)
    h_ddp, h_single = _history(tmp_path / "ddp"), _history(single)
    assert len(h_ddp) == len(h_single) == 2
    for a, b in zip(h_ddp, h_single):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=TOLERANCE), key
    assert (tmp_path / "ddp" / "best.safetensors").is_file() and (tmp_path / "ddp" / "state.pt").is_file()


def test_two_process_resume_matches_an_uninterrupted_run_with_dropout(tmp_path):
    """Each rank draws dropout masks for its own share; with shares of unequal size (batch 5 on 2 ranks) their
    generators drift apart, so a resumed rank must restart from its own saved state, not rank 0's."""
    split_dataset(SAMPLE, tmp_path / "split.csv", seed=0, progress=False)
    settings = ["--model", "cnn", "--image-size", "32", "--batch-size", "5", "--set", "model_args={dropout=0.5}",
                "--nproc", "2", "--data", str(SAMPLE), "--split", str(tmp_path / "split.csv")]

    def run(out, *extra):
        cmd = [sys.executable, "-m", "lungxray", "train", "--out", str(tmp_path / out), *settings, *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]

    run("whole", "--epochs", "2")
    run("parts", "--epochs", "1")
    ranks = torch.load(tmp_path / "parts" / "state.pt", weights_only=True)["rank_rng"]
    if torch.equal(ranks[0]["torch_rng"], ranks[1]["torch_rng"]):
        # Some CPU builds (MKL on Intel) seed bernoulli once per call, whatever the share's size: then the ranks'
        # generators never drift apart and this test could not tell per-rank states from rank 0's.
        pytest.skip("this CPU's dropout draws do not depend on the share's size")
    run("parts", "--epochs", "2", "--resume")
    whole, parts = _history(tmp_path / "whole"), _history(tmp_path / "parts")
    assert len(whole) == len(parts) == 2
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert float(parts[1][key]) == float(whole[1][key]), key


def test_the_schedule_counts_only_the_steps_ranks_take():
    from lungxray.train import steps_in_epoch

    assert steps_in_epoch(10, 4) == 3  # one process: the tail of 2 is a step
    assert steps_in_epoch(10, 4, world=3) == 2  # three ranks: a tail of 2 is skipped, so it is no step
    assert steps_in_epoch(11, 4, world=3) == 3 and steps_in_epoch(8, 4, world=2) == 2
    assert steps_in_epoch(10, 2, world=3) == 0  # batches smaller than the ranks: the loop skips every one


def test_under_ddp_the_one_cycle_schedule_ends_where_it_should(tmp_path):
    """With a tail batch too short for both ranks, the schedule counts only the steps taken, so it reaches its end."""
    split_dataset(SAMPLE, tmp_path / "split.csv", seed=0, progress=False)
    with open(tmp_path / "split.csv", newline="") as fh:
        n_train = sum(r["split"] == "train" for r in csv.DictReader(fh))
    batch = next(b for b in range(3, n_train) if n_train % b == 1)  # a tail of one image: skipped with two ranks
    cmd = [sys.executable, "-m", "lungxray", "train", "--data", str(SAMPLE), "--split", str(tmp_path / "split.csv"),
           "--out", str(tmp_path / "ddp"), "--nproc", "2", "--model", "cnn", "--image-size", "32", "--epochs", "2",
           "--batch-size", str(batch), "--set", "scheduler=onecycle", "--set", "calibrate=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sched = torch.load(tmp_path / "ddp" / "state.pt", weights_only=True)["scheduler"]
    assert sched["total_steps"] == 2 * (n_train // batch)  # the tail is no step
    assert sched["last_epoch"] == sched["total_steps"]  # every planned step was taken: the rate fully annealed

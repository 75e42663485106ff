"""The epoch loop shared by the classifier's and the segmenter's training (`lungxray.runs`)."""

import csv
import logging

import numpy as np
import pytest
import torch

from lungxray import runs
from lungxray.errors import TrainingError


def _loop(tmp_path, history, saved, epochs=3, writer=True):
    return runs.EpochLoop(tmp_path, epochs, seed=5, batch_size=4, history=history, save_state=saved.append,
                          progress=False, resume_hint="`resume-here`", columns=None, writer=writer)


def _one_epoch(ep, indices, loss=0.5):
    seen = []
    for idx in ep.batches(indices):
        seen.append(idx)
        ep.add(loss, len(idx), correct=len(idx) // 2)
    return seen


def test_batches_cover_every_index_once_in_a_seeded_order(tmp_path):
    indices = np.arange(10, 31)
    orders = []
    for _ in range(2):
        loop = _loop(tmp_path, [], [])
        orders.append([np.concatenate(_one_epoch(ep, indices)) for ep in loop.epochs(1)])
    for order in orders[0]:
        assert sorted(order.tolist()) == indices.tolist()
    # The same seed replays the same order (what exact resume needs); epochs differ from each other.
    assert all(np.array_equal(a, b) for a, b in zip(*orders))
    assert not np.array_equal(orders[0][0], orders[0][1])
    # The order is the one every run so far used (changing it would break resuming runs started earlier).
    gen = torch.Generator().manual_seed(5 * 100_003 + 1)
    assert np.array_equal(orders[0][0], indices[torch.randperm(len(indices), generator=gen).numpy()])
    # Batches have the configured size, the last one the remainder.
    loop = _loop(tmp_path, [], [])
    assert [len(b) for b in _one_epoch(next(loop.epochs(1)), indices)] == [4, 4, 4, 4, 4, 1]


def _rows(path):
    return len(list(csv.DictReader(path.open()))) if path.exists() else 0


def test_an_epoch_is_recorded_then_written_history_before_state(tmp_path):
    history, saved = [], []
    # The state stand-in notes how many epochs history.csv holds when the state is written.
    loop = runs.EpochLoop(tmp_path, 2, seed=5, batch_size=4, history=history, progress=False, resume_hint="x",
                          save_state=lambda n: saved.append((n, _rows(tmp_path / "history.csv"))))
    for ep in loop.epochs(1):
        _one_epoch(ep, np.arange(8), loss=0.25)
        row = loop.record(ep, {"val_loss": 0.125}, lr=1e-3)
        assert _rows(tmp_path / "history.csv") == ep.number - 1  # recorded, not yet written
        loop.commit(ep, "done")
    assert saved == [(1, 1), (2, 2)]  # the state of epoch n is written after history.csv holds epoch n
    assert row["train_loss"] == 0.25 and row["train_acc"] == 0.5 and row["val_loss"] == 0.125
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "lr", "seconds", "images_per_s"]


def test_a_non_finite_loss_stops_before_anything_of_the_epoch_is_written(tmp_path):
    history, saved = [], []
    loop = _loop(tmp_path, history, saved)
    ep = next(loop.epochs(1))
    _one_epoch(ep, np.arange(8))
    with pytest.raises(TrainingError, match="epoch 1: the loss became non-finite.*val_dice nan"):
        loop.record(ep, {"val_dice": float("nan")}, lr=1e-3)
    ep = next(loop.epochs(2))
    _one_epoch(ep, np.arange(8), loss=float("inf"))
    with pytest.raises(TrainingError, match="train loss inf"):
        loop.record(ep, {}, lr=1e-3)
    assert history == [] and saved == [] and not (tmp_path / "history.csv").exists()


def test_ctrl_c_says_which_epoch_is_saved_and_how_to_resume(tmp_path, caplog):
    history, saved = [], []
    loop = _loop(tmp_path, history, saved)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        with loop.interruptible():
            for ep in loop.epochs(1):
                _one_epoch(ep, np.arange(8))
                if ep.number == 2:
                    raise KeyboardInterrupt
                loop.record(ep, {}, lr=1e-3)
                loop.commit(ep, "done")
    assert "interrupted during epoch 2; epoch 1 is saved: continue with `resume-here`" in caplog.text
    assert saved == [1]


def test_only_the_writer_writes(tmp_path):
    history, saved = [], []
    loop = _loop(tmp_path, history, saved, writer=False)
    ep = next(loop.epochs(1))
    _one_epoch(ep, np.arange(8))
    loop.record(ep, {}, lr=1e-3)
    loop.commit(ep, "done")
    assert len(history) == 1 and saved == [] and not (tmp_path / "history.csv").exists()


def test_the_gpu_generator_is_saved_and_restored_when_a_gpu_was_used(tmp_path, monkeypatch):
    gpu_state = torch.ByteTensor([7, 1, 2, 3])
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: gpu_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    runs.save_state(tmp_path, model, epoch=3, optimizer=opt.state_dict())
    state = torch.load(tmp_path / runs.STATE, weights_only=True)
    assert torch.equal(state["cuda_rng"], gpu_state)
    assert runs.restore_state(state, model, opt) == 4
    assert len(restored) == 1 and torch.equal(restored[0], gpu_state)
    # A CPU-only run writes no GPU state and restores none.
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    runs.save_state(tmp_path, model, epoch=3, optimizer=opt.state_dict())
    runs.restore_state(torch.load(tmp_path / runs.STATE, weights_only=True), model, opt)
    assert len(restored) == 1

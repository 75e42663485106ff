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
    with pytest.raises(TrainingError, match="epoch 1: the loss became non-finite.*val_dice nan.*no epoch finished, so "):
        loop.record(ep, {"val_dice": float("nan")}, lr=1e-3)  # nothing to keep yet: the message does not promise it
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


def _rng_with(seed):
    g = torch.Generator().manual_seed(seed)
    return g.get_state()


def test_each_rank_resumes_from_its_own_generators(tmp_path, caplog):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mine = [{"torch_rng": _rng_with(10)}, {"torch_rng": _rng_with(11)}]
    runs.save_state(tmp_path, model, mine, epoch=2, optimizer=opt.state_dict())
    state = torch.load(tmp_path / runs.STATE, weights_only=True)
    before = torch.get_rng_state()
    try:
        runs.restore_state(state, model, opt, rank=1, world=2)
        assert torch.equal(torch.get_rng_state(), mine[1]["torch_rng"])
        runs.restore_state(state, model, opt, rank=0, world=2)
        assert torch.equal(torch.get_rng_state(), mine[0]["torch_rng"])
        # Resumed by another number of processes: rank 0's state everywhere, and a warning that says so.
        with caplog.at_level("WARNING"):
            runs.restore_state(state, model, opt, rank=0, world=3)
        assert torch.equal(torch.get_rng_state(), mine[0]["torch_rng"])
        assert "saved by 2 processes and is resumed by 3" in caplog.text
    finally:
        torch.set_rng_state(before)


def test_commit_hands_every_ranks_generators_to_the_writer(tmp_path):
    saved = []
    loop = runs.EpochLoop(tmp_path, 1, seed=5, batch_size=4, history=[], progress=False, resume_hint="`r`",
                          save_state=lambda epoch, **kw: saved.append((epoch, kw)), ctx=_TwoRanks())
    ep = next(loop.epochs(1))
    _one_epoch(ep, np.arange(8))
    loop.record(ep, {}, lr=1e-3)
    loop.commit(ep, "done")
    (epoch, kw), = saved
    ranks = kw["rank_rng"]
    assert epoch == 1 and len(ranks) == 2
    assert torch.equal(ranks[0]["torch_rng"], torch.get_rng_state())
    assert not torch.equal(ranks[1]["torch_rng"], ranks[0]["torch_rng"])


def test_commit_gathers_on_every_rank_but_only_the_writer_saves(tmp_path):
    """The gather is collective: a rank that skipped it would leave the others waiting forever."""
    ctx, saved = _TwoRanks(), []
    loop = runs.EpochLoop(tmp_path, 1, seed=5, batch_size=4, history=[], progress=False, resume_hint="`r`",
                          save_state=lambda epoch, **kw: saved.append(epoch), writer=False, ctx=ctx)
    ep = next(loop.epochs(1))
    _one_epoch(ep, np.arange(8))
    loop.record(ep, {}, lr=1e-3)
    loop.commit(ep, "done")
    assert ctx.gathers == 1 and saved == []


class _TwoRanks:
    """A `DistContext` stand-in for two processes: rank 1's CPU generator differs from this process's."""
    enabled, world = True, 2

    def __init__(self):
        self.gathers = 0

    def sum(self, values):
        return [2 * v for v in values]

    def all_gather(self, t):
        self.gathers += 1
        return [t, torch.zeros_like(t)]

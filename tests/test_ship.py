"""`lungxray ship`: the three shipped files always belong to one checkpoint, and a bad conversion ships nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lungxray.checkpoint import load_checkpoint, ship_checkpoint
from lungxray.errors import CheckpointError
from lungxray.utils import read_json


def _run(make, folder: Path, seed: int, ood: bool) -> Path:
    make(folder / "best", seed=seed)
    if ood:  # any safetensors file stands for the OOD statistics here: ship only copies it
        save_file({"mean": torch.full((4,), float(seed))}, str(folder / "best.ood.safetensors"))
    return folder


def test_a_run_without_ood_statistics_does_not_inherit_the_previous_models(untrained_checkpoint, tmp_path):
    a = _run(untrained_checkpoint, tmp_path / "a", seed=1, ood=True)
    b = _run(untrained_checkpoint, tmp_path / "b", seed=2, ood=False)
    dest = tmp_path / "weights" / "classifier"
    ship_checkpoint(a, dest)
    shipped_ood = dest.with_name("classifier.ood.safetensors")
    assert load_file(str(shipped_ood))["mean"][0] == 1.0
    written = ship_checkpoint(b, dest, overwrite=True)
    assert not shipped_ood.exists() and shipped_ood not in written  # A's statistics would describe other features
    assert (dest.with_suffix(".safetensors")).read_bytes() == (b / "best.safetensors").read_bytes()
    # A leftover OOD file alone is still "a shipped model" that only overwrite=True replaces.
    save_file({"mean": torch.zeros(4)}, str(shipped_ood))
    for f in (dest.with_suffix(".safetensors"), dest.with_suffix(".json")):
        f.unlink()
    with pytest.raises(CheckpointError, match="overwrite=True"):
        ship_checkpoint(b, dest)


def test_half_refuses_weights_float16_cannot_hold_and_leaves_the_shipped_model(untrained_checkpoint, tmp_path):
    good = _run(untrained_checkpoint, tmp_path / "good", seed=1, ood=True)
    dest = tmp_path / "weights" / "classifier"
    ship_checkpoint(good, dest, half=True)
    assert read_json(dest.with_suffix(".json"))["stored_dtype"] == "float16"
    load_checkpoint(dest.with_suffix(".safetensors"))  # the fp16 file loads
    before = {p.name: p.read_bytes() for p in dest.parent.iterdir()}

    big = _run(untrained_checkpoint, tmp_path / "big", seed=2, ood=False)
    state = load_file(str(big / "best.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().fill_(1e5)  # fine in float32, infinity in float16
    save_file(state, str(big / "best.safetensors"), metadata={"format": "lungxray-checkpoint/1"})
    with pytest.raises(CheckpointError, match="float16"):
        ship_checkpoint(big, dest, overwrite=True, half=True)
    assert {p.name: p.read_bytes() for p in dest.parent.iterdir()} == before


def test_the_list_of_seen_images_ships_with_its_model_and_never_outlives_it(untrained_checkpoint, tmp_path):
    from lungxray.seen import read_seen, seen_path, write_seen

    a = _run(untrained_checkpoint, tmp_path / "a", seed=1, ood=False)
    write_seen(seen_path(a), {"train": ["ab" * 20], "val": []})
    b = _run(untrained_checkpoint, tmp_path / "b", seed=2, ood=False)
    dest = tmp_path / "weights" / "classifier"
    written = ship_checkpoint(a, dest)
    shipped = dest.with_name("classifier.seen.json")
    assert shipped in written and shipped == seen_path(dest.with_suffix(".safetensors"))
    assert read_seen(shipped)["train"] == {"ab" * 8}
    shipped.with_name("classifier.json").unlink()
    dest.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="classifier.seen.json exists"):  # a shipped file, never replaced silently
        ship_checkpoint(b, dest)
    ship_checkpoint(b, dest, overwrite=True)
    assert not shipped.exists()  # A's list says nothing about B

"""benchmarks/segmentation.py: which pairs it scores."""

from pathlib import Path

import pytest
from toolmod import ROOT, load_tool

from lungxray.data.api import split_dataset
from lungxray.data.split import read_manifest

SAMPLE = ROOT / "examples" / "radiography-sample"
bench = load_tool("segmentation", ROOT / "benchmarks")


def test_split_held_scores_exactly_the_pairs_a_classifier_is_scored_on(tmp_path):
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    held = {Path(r.path).name for r in read_manifest(tmp_path / "split.csv")
            if r.label == "Viral Pneumonia" and r.split in ("val", "test")}
    label, pairs = bench.split_held_pairs(str(SAMPLE / "Viral Pneumonia"), str(tmp_path / "split.csv"))
    assert held and {p.image.name for p in pairs} == held
    assert "val + test of split.csv" in label


def test_split_held_refuses_a_folder_the_split_does_not_hold(tmp_path):
    import shutil

    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    vp = SAMPLE / "Viral Pneumonia"
    name = sorted(p.name for p in (vp / "masks").iterdir())[0]
    for sub in ("images", "masks"):  # a real pair under a name the split does not hold
        (tmp_path / "other" / sub).mkdir(parents=True)
        shutil.copy(vp / sub / name, tmp_path / "other" / sub / "unlisted.png")
    with pytest.raises(bench.DatasetError, match="none of the pairs"):
        bench.split_held_pairs(str(tmp_path / "other"), str(tmp_path / "split.csv"))

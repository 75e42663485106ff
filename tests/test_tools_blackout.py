"""tools/blackout_check.py on the bundled sample: every test film is segmented once, and --by-class rows add up."""

from pathlib import Path

from toolmod import load_tool

from lungxray.data.api import split_dataset
from lungxray.data.split import read_manifest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "radiography-sample"
blackout = load_tool("blackout_check")


def test_by_class_rows_cover_each_class_once_and_sum_to_one(tmp_path, monkeypatch, capsys, stand_in_segmenter,
                                                            untrained_checkpoint):
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    seg = stand_in_segmenter("ellipse")
    monkeypatch.setattr(blackout.Segmenter, "load", classmethod(lambda cls, *a, **k: seg))
    weights = untrained_checkpoint(tmp_path / "m")
    blackout.main(["--model", str(weights), "--data", str(SAMPLE), "--split", str(tmp_path / "split.csv"),
                   "--subset", "test", "--by-class", "--class-blind"])
    out = capsys.readouterr().out
    n_test = sum(r.split == "test" for r in read_manifest(tmp_path / "split.csv"))
    assert f"test split: {n_test} images" in out and seg.images == n_test  # every test film segmented once
    assert "class-blind guess in the class proportions: 33.3%" in out  # the sample's test split: 3 equal classes
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("  ") and "%" in ln]
    assert [r[0] for r in rows] == ["COVID", "Normal", "Viral"]
    for r in rows:
        shares = [float(v.rstrip("%")) for v in r[-3:]]
        assert abs(sum(shares) - 100.0) < 0.2
    assert sum(int(r[-4]) for r in rows) == n_test


def test_the_films_where_the_pipeline_finds_no_lungs_are_counted(tmp_path, monkeypatch, capsys, stand_in_segmenter,
                                                                 untrained_checkpoint):
    """For a lung-only model the blacked-out film has no lungs left to find: the tool says how often."""
    split_dataset(SAMPLE, tmp_path / "split.csv", progress=False)
    seg = stand_in_segmenter("bright-ellipse")
    monkeypatch.setattr(blackout.Segmenter, "load", classmethod(lambda cls, *a, **k: seg))
    weights = untrained_checkpoint(tmp_path / "m", masks="predicted")
    blackout.main(["--model", str(weights), "--data", str(SAMPLE), "--split", str(tmp_path / "split.csv"),
                   "--subset", "test"])
    out = capsys.readouterr().out
    assert "no lungs found" in out.splitlines()[1]  # the header names the column
    whole, blacked = [ln.split() for ln in out.splitlines() if ln.startswith(weights.name)]
    assert whole[-1] == "0.0%" and blacked[-1] == "100.0%"

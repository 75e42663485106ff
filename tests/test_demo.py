"""`make demo`: the shipped model on the bundled sample writes overlays, CSV/JSON and a grid page."""

import csv
from pathlib import Path

import pytest

from lungxray.demo import run_demo
from lungxray.errors import ConfigError
from lungxray.predict import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason=f"no shipped model at {DEFAULT_MODEL}")


def test_demo_writes_everything_and_never_touches_a_foreign_folder(tmp_path):
    out = tmp_path / "test_results"
    lines: list[str] = []
    run_demo(out, echo=lines.append, progress=False)
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    assert list(rows[0]) == ["path", "prediction", "probability", "COVID", "Normal", "Viral Pneumonia",
                             "ood_flagged", "ood_reasons"]
    overlays = sorted(out.rglob("*.png"))
    assert len(overlays) == 30 and all(p.stat().st_size > 10_000 for p in overlays)
    page = (out / "index.html").read_text()
    assert page.count("<img") == 30 and "not a medical device" in page.lower()
    assert any("index.html" in line for line in lines)
    run_demo(out, echo=lines.append, progress=False)  # its own folder: replaced
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not made by the demo"):
        run_demo(foreign, echo=lines.append, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_the_default_folder_of_a_users_own_is_kept_and_the_next_free_one_used(tmp_path):
    from lungxray.demo import _MARKER, default_folder

    base = tmp_path / "test_results"
    assert default_folder(base) == base  # free
    base.mkdir()
    (base / _MARKER).write_text("made by lungxray demo")
    (base / "index.html").write_text("an earlier demo")
    assert default_folder(base) == base  # an earlier demo's: replaced by the next one
    (base / _MARKER).unlink()  # now the user's own folder of that name
    assert default_folder(base) == tmp_path / "test_results-2"

"""Tests for lungxray.report.html: self-contained, escaped, one data URI per image."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from lungxray.metrics import classification_metrics, softmax
from lungxray.report import metrics_tables, plot_confusion, write_report

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


def _png(tmp_path: Path, name: str) -> Path:
    return plot_confusion([[5, 1, 0], [0, 4, 2], [1, 0, 6]], CLASSES, tmp_path / name)


def test_write_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    a, b = _png(tmp_path, "a.png"), _png(tmp_path, "b.png")
    sections = [
        {"heading": "Overview & <notes>",
         "text": "Watch <script>alert(1)</script> here.\n\nSecond."},
        {"heading": "Figures", "images": [a, b]},
        {"heading": "Table", "table": {"columns": ["x", "<y>"], "rows": [[1, 0.5], ["<b>", None]]},
         "images": [str(a)]},
    ]
    out = write_report(tmp_path / "rep" / "report.html", title="Run <1>", sections=sections)
    assert out == tmp_path / "rep" / "report.html"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for heading in ("Overview &amp; &lt;notes&gt;", "Figures", "Table", "Run &lt;1&gt;"):
        assert heading in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "&lt;b&gt;" in page and "<b>" not in page and "&lt;y&gt;" in page
    assert page.count("data:image/png;base64,") == 3
    # The embedded bytes are the image itself, so the page renders without the PNG files.
    first = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert first is not None and base64.b64decode(first.group(1)) == a.read_bytes()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left behind
    # Published with the mode open() would give (mkstemp's private 0600 must not leak through).
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(a.stat().st_mode) == 0o666 & ~umask


def test_write_report_missing_image_and_heading(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        missing = [{"heading": "h", "images": [tmp_path / "no.png"]}]
        write_report(tmp_path / "r.html", title="t", sections=missing)
    with pytest.raises(ValueError):
        write_report(tmp_path / "r.html", title="t", sections=[{"text": "no heading"}])
    assert not (tmp_path / "r.html").exists()


def test_metrics_tables_render(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    z = rng.normal(size=(90, 3))
    z[np.arange(90), y] += 1.5
    m = classification_metrics(y, softmax(z), CLASSES, n_bootstrap=50)
    sections = metrics_tables(m)
    headings = [s["heading"] for s in sections]
    assert headings[:2] == ["Summary", "Per-class metrics"]
    summary = dict((r[0], r[1]) for r in sections[0]["table"]["rows"])
    assert summary["Accuracy"] == m["accuracy"] and summary["Accuracy 95% CI"] == m["accuracy_ci"]
    assert summary["Macro AUC (one-vs-rest)"] == m["macro"]["auc"]
    assert summary["Expected calibration error (ECE)"] == m["ece"]
    per_class = sections[1]["table"]["rows"]
    assert [r[0] for r in per_class] == CLASSES
    assert [r[1] for r in per_class] == [m["per_class"][c]["support"] for c in CLASSES]
    page = write_report(tmp_path / "m.html", title="Metrics", sections=sections).read_text()
    assert f"{m['accuracy']:.4f}" in page and "Viral Pneumonia" in page


def test_gallery_links_overlays_whose_names_are_not_urls(tmp_path):
    from urllib.parse import unquote

    from lungxray.report.gallery import write_gallery

    name = "case #3 a?b & c.png"
    row = {"name": name, "prediction": "COVID", "probability": 0.9, "overlay": f"overlays/{name}",
           "probabilities": {"COVID": 0.9, "Normal": 0.05, "Viral Pneumonia": 0.05}}
    page = write_gallery(tmp_path, [row], {"name": "m"}, ["COVID", "Normal", "Viral Pneumonia"]).read_text()
    src = page.split('<img src="')[1].split('"')[0]
    assert "#" not in src and "?" not in src and " " not in src
    assert unquote(src.replace("&amp;", "&")) == f"overlays/{name}"  # the browser finds the file

"""tools/agreement.py: per-run and ensemble accuracy and the count of runs wrong on each image, from saved predictions."""

from pathlib import Path

import numpy as np
import pytest

from toolmod import load_tool

ROOT = Path(__file__).resolve().parents[1]
agreement = load_tool("agreement")

CLASSES = ("COVID", "Normal", "Viral Pneumonia")


def _run(folder: Path, labels: list[str], probs: list[list[float]], order=None) -> Path:
    (folder / "eval-val").mkdir(parents=True)
    lines = ["path,label,prediction,probability," + ",".join(CLASSES)]
    for i in order or range(len(labels)):
        p = probs[i]
        k = int(np.argmax(p))
        lines.append(f"img{i}.png,{labels[i]},{CLASSES[k]},{p[k]}," + ",".join(str(v) for v in p))
    (folder / "eval-val" / "predictions.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_counts_shared_and_single_errors_and_averages_probabilities(tmp_path, capsys):
    labels = ["COVID", "Normal", "Viral Pneumonia", "COVID"]
    # img0: both right; img1: both wrong (shared); img2: only a is wrong; img3: only b, and the average fixes it.
    a = _run(tmp_path / "a", labels, [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.6, 0.3], [0.9, 0.1, 0.0]])
    b = _run(tmp_path / "b", labels, [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.0, 0.1, 0.9], [0.4, 0.6, 0.0]],
             order=[3, 2, 1, 0])  # rows in another order: matched by path
    r = agreement.agreement([a, b])
    assert r["wrong_count"].tolist() == [0, 2, 1, 1]
    assert r["run_accuracy"].tolist() == [0.5, 0.5]
    assert r["ensemble_accuracy"] == 0.75  # img2 and img3 averaged back to the right class, img1 not
    assert r["ensemble_nll"] == pytest.approx(-np.mean(np.log([0.8, 0.2, 0.6, 0.65])))
    assert agreement.main([str(a), str(b), "--list", "2"]) == 0
    out = capsys.readouterr().out
    assert "0: 1  1: 2  2: 1" in out and "img1.png  Normal -> COVID  wrong in 2" in out and "img2.png" not in out


def test_runs_scored_on_other_images_or_not_evaluated_are_refused(tmp_path, capsys):
    a = _run(tmp_path / "a", ["COVID"], [[0.9, 0.05, 0.05]])
    b = _run(tmp_path / "b", ["Normal"], [[0.9, 0.05, 0.05]])
    with pytest.raises(ValueError, match="other images or classes"):
        agreement.agreement([a, b])
    with pytest.raises(FileNotFoundError, match="lungxray evaluate"):
        agreement.agreement([a, tmp_path / "never"])
    assert agreement.main([str(a), str(b)]) == 2  # a clear line, not a traceback
    assert capsys.readouterr().err.startswith("error: ")

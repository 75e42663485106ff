"""tools/out_of_scope.py: which COVID-QU-Ex folders it scores."""

import shutil
from pathlib import Path

from toolmod import load_tool

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "radiography-sample"
oos = load_tool("out_of_scope")


def _quex_like(root: Path) -> Path:
    """COVID-QU-Ex's layout (Train/Val, three groups, images/), two films per group in Train and one in Val."""
    films = sorted((SAMPLE / "Normal" / "images").glob("*.png"))
    for k, group in enumerate(("Non-COVID", "COVID-19", "Normal")):
        for split, n in (("Train", 2), ("Val", 1)):
            folder = root / split / group / "images"
            folder.mkdir(parents=True)
            for f in films[3 * k: 3 * k + n]:
                shutil.copy(f, folder / f.name)
    return root


def test_val_only_scores_the_films_the_segmenter_never_trained_on(tmp_path, capsys, untrained_checkpoint):
    data = _quex_like(tmp_path / "quex")
    weights = untrained_checkpoint(tmp_path / "m")
    oos.main(["--model", str(weights), "--data", str(data)])
    both = [ln.split() for ln in capsys.readouterr().out.splitlines()[1:]]
    oos.main(["--model", str(weights), "--data", str(data), "--folders", "Val"])
    val = [ln.split() for ln in capsys.readouterr().out.splitlines()[1:]]
    assert [r[2] for r in both] == ["3", "3", "3"] and [r[2] for r in val] == ["1", "1", "1"]
    assert [r[1] for r in val] == ["Non-COVID", "COVID-19", "Normal"]

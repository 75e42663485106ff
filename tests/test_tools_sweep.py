"""The GPU-sweep helpers: packing keeps paths and drops the test split; the summary picks the lowest val loss."""

import csv
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "radiography-sample"


def _run(*args, cwd):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=True)


def test_pack_keeps_train_and_val_only(tmp_path):
    covid = sorted((SAMPLE / "COVID" / "images").iterdir())[:3]
    split = tmp_path / "split.csv"
    with open(split, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "mask_path", "label", "split", "group"])
        for p, s in zip(covid, ("train", "val", "test")):
            w.writerow([p.relative_to(SAMPLE).as_posix(), "COVID/masks/x.png" if s == "train" else "", "COVID", s, 0])
    out = tmp_path / "pack"
    _run(ROOT / "tools/sweep/pack.py", "--data", SAMPLE, "--split", split, "--out", out, "--size", 40, cwd=tmp_path)
    rows = list(csv.DictReader(open(out / "split.csv")))
    assert [r["split"] for r in rows] == ["train", "val"]
    assert all(r["mask_path"] == "" for r in rows)  # masks are not packed
    packed = out / "data" / rows[0]["path"]
    with Image.open(packed) as im:  # same .png name, JPEG inside; Pillow reads it by content
        assert im.size == (40, 40) and im.format == "JPEG"
    assert not (out / "data" / covid[2].relative_to(SAMPLE)).exists()


def test_summarize_reports_lowest_val_loss(tmp_path):
    for name, losses in {"a": [0.5, 0.2, 0.3], "b": [0.4, 0.35, 0.1]}.items():
        with open(tmp_path / f"{name}.history.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc"])
            for e, v in enumerate(losses, 1):
                w.writerow([e, 1, 0.5, v, 0.9 if v < 0.15 else 0.8])
    table = _run(ROOT / "tools/sweep/summarize.py", tmp_path, cwd=tmp_path).stdout
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "| 0.2000 | 2 | 80.0% |" in lines["a"]
    assert "| 0.1000 | 3 | 90.0% |" in lines["b"]
    # --at-epoch compares runs at one point of their schedules (runs cut short at different epochs)
    table = _run(ROOT / "tools/sweep/summarize.py", tmp_path, "--at-epoch", 2, cwd=tmp_path).stdout
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert lines["a"].rstrip().endswith("| 0.2000 | 80.0% |") and lines["b"].rstrip().endswith("| 0.3500 | 80.0% |")


def test_summarize_by_arm_averages_best_losses_over_seeds(tmp_path):
    for name, best in {"x-s0": 0.20, "x-s1": 0.30, "y-s0": 0.10, "y-s1": 0.12, "y-s2": 0.14, "loose": 0.05}.items():
        with open(tmp_path / f"{name}.history.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc"])
            w.writerows([[1, 1, 0.5, best + 0.1, 0.8], [2, 1, 0.5, best, 0.8]])
    table = _run(ROOT / "tools/sweep/summarize.py", tmp_path, "--by-arm", cwd=tmp_path).stdout
    arms = [line for line in table.split("| arm |", 1)[1].splitlines()[2:] if line]
    # sorted by mean; y: mean 0.12, sd 0.02, se 0.02/sqrt(3); a run not named ARM-sN is no arm
    assert arms == ["| y | 3 | 0.1200 | 0.0200 | 0.0115 |", "| x | 2 | 0.2500 | 0.0707 | 0.0500 |"]


def test_pair_check_averages_on_validation_and_counts_shared_test_errors(tmp_path):
    classes = ["COVID", "Normal", "Viral Pneumonia"]
    # Three COVID images; A misses the first, B the second and third (all as Normal); averaged, none is missed.
    probs = {"a": [[0.4, 0.6, 0.0], [0.9, 0.1, 0.0], [0.8, 0.2, 0.0]],
             "b": [[0.9, 0.1, 0.0], [0.45, 0.55, 0.0], [0.4, 0.6, 0.0]]}
    for run, rows in probs.items():
        for split in ("val", "test"):
            d = tmp_path / run / f"eval-{split}"
            d.mkdir(parents=True)
            with open(d / "predictions.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "label", "prediction", "probability", *classes])
                for i, p in enumerate(rows):
                    w.writerow([f"x{i}.png", "COVID", classes[max(range(3), key=p.__getitem__)], max(p), *p])
    out = _run(ROOT / "tools/pair_check.py", tmp_path / "a", tmp_path / "b", cwd=tmp_path).stdout.splitlines()
    assert out[0].startswith("val a ") and "errors 1 " in out[0]
    assert out[1].startswith("val b ") and "errors 2 " in out[1]
    assert out[2].startswith("val mean of both") and "errors 0 " in out[2]
    assert out[3] == "test COVID called Normal: 1 and 2, shared 0; all errors 1 and 2, shared 0"


def test_pack_lung_view_stores_what_the_model_sees(tmp_path):
    """--lung-view stores each image as the config's lung-only model sees it before augmentation (JPEG aside)."""
    import numpy as np

    from lungxray.config import load_config
    from lungxray.data.api import load_split, split_dataset
    from lungxray.inference import load_batch

    split = tmp_path / "split.csv"
    split_dataset(SAMPLE, split, seed=0, progress=False)
    out = tmp_path / "pack"
    config = ROOT / "configs" / "lungs-prog.toml"
    _run(ROOT / "tools/sweep/pack.py", "--data", SAMPLE, "--split", split, "--out", out, "--size", 64,
         "--quality", 95, "--lung-view", config, cwd=tmp_path)
    rows = list(csv.DictReader(open(out / "split.csv")))
    cfg = load_config(config)
    data = load_split(SAMPLE, split, size=(64, 64), masks=cfg.masks, progress=False)
    i = int(data.indices("train")[0])
    expected = load_batch(data, np.array([i]), cfg.masks, view=cfg.lung_view())[0, 0].numpy() * 255
    with Image.open(out / "data" / data.rows[i].path) as im:
        packed = np.asarray(im, dtype=np.float64)
    assert packed.shape == (64, 64)
    assert np.abs(packed - expected).mean() < 3  # JPEG q95 of the same picture
    with Image.open(SAMPLE / data.rows[i].path) as im:
        whole = np.asarray(im.convert("L").resize((64, 64)), dtype=np.float64)
    assert np.abs(packed - whole).mean() > 10  # not the whole image
    assert len(rows) == len(data.indices("train")) + len(data.indices("val"))

"""tools/pseudo_masks.py: predicted masks for a split's training images only, in the layout `segment train` reads."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lungxray.segment.data import find_pairs, load_pairs
from lungxray.utils import read_json

from toolmod import load_tool

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "radiography-sample"
UNET = ROOT / "src" / "lungxray" / "weights" / "lung-unet.safetensors"
pseudo_masks = load_tool("pseudo_masks")


def _manifest(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    names = sorted(p.name for p in (SAMPLE / "COVID" / "images").iterdir())[:4]
    splits = ["train", "test", "train", "val"]
    path = tmp_path / "split.csv"
    path.write_text("path,mask_path,label,split,group\n" + "".join(
        f"COVID/images/{n},,COVID,{s},{k}\n" for k, (n, s) in enumerate(zip(names, splits))))
    return path, [n for n, s in zip(names, splits) if s == "train"], names


def test_only_training_images_get_masks_and_segment_train_reads_them(tmp_path, capsys, monkeypatch):
    manifest, train_names, _ = _manifest(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative --out, as in the documented command
    out = Path("pseudo")
    meta = pseudo_masks.main(["--split", str(manifest), "--data", str(SAMPLE), "--label", "COVID", "--label", "COVID",
                              "--weights", str(UNET), "--out", str(out)])
    assert meta["counts"] == {"COVID": 2} and read_json(out / "pseudo-masks.json")["subset"] == "train"
    assert sorted(p.name for p in (out / "COVID" / "images").iterdir()) == train_names
    link = out / "COVID" / "images" / train_names[0]
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)) and link.resolve().parent.parent.name == "COVID"
    # The shipped U-Net was not trained with this split left out: said, and recorded.
    assert meta["weights_left_out_this_split"] is False and len(meta["weights_sha256"]) == 64
    assert sorted(p.name for p in (out / "COVID" / "masks").iterdir()) == train_names
    mask = np.asarray(Image.open(out / "COVID" / "masks" / train_names[0]))
    assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 255} and 0.1 < (mask > 0).mean() < 0.7
    pairs = load_pairs(find_pairs(out), (64, 64), progress=False)
    assert len(pairs) == 2 and pairs.masks.any()
    printed = capsys.readouterr()
    assert "COVID: 2 masks" in printed.out and "was not trained with this split" in printed.err
    assert not Path("pseudo.partial").exists()


def test_refuses_an_existing_folder_an_unknown_label_and_bad_weights_leaving_nothing(tmp_path):
    manifest, _, _ = _manifest(tmp_path)
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="exists"):
        pseudo_masks.main(["--split", str(manifest), "--data", str(SAMPLE), "--label", "COVID",
                           "--weights", str(UNET), "--out", str(tmp_path / "taken")])
    with pytest.raises(SystemExit, match="Normal not in"):
        pseudo_masks.main(["--split", str(manifest), "--data", str(SAMPLE), "--label", "Normal",
                           "--weights", str(UNET), "--out", str(tmp_path / "new")])
    with pytest.raises(SystemExit, match="error: .*no-such-unet"):  # a library error, not a traceback
        pseudo_masks.main(["--split", str(manifest), "--data", str(SAMPLE), "--label", "COVID",
                           "--weights", str(tmp_path / "no-such-unet"), "--out", str(tmp_path / "new")])
    with pytest.raises(SystemExit, match="not found"):
        pseudo_masks.main(["--split", str(manifest), "--data", str(tmp_path), "--label", "COVID",
                           "--weights", str(UNET), "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()

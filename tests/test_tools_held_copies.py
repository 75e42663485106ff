"""tools/held_copies.py: copies of a split's held images in another folder, by content, and their picture."""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from lungxray.data.io import read_image

from toolmod import load_tool

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "radiography-sample"
VP = SAMPLE / "Viral Pneumonia"
held_copies = load_tool("held_copies")


def test_a_renamed_re_export_of_a_held_image_is_listed_and_drawn(tmp_path, capsys):
    manifest = tmp_path / "split.csv"
    names = sorted(p.name for p in (VP / "images").iterdir())
    manifest.write_text("path,mask_path,label,split,group\n" + "".join(
        f"Viral Pneumonia/images/{n},,Viral Pneumonia,{'test' if n == 'Viral Pneumonia-1.png' else 'train'},{k}\n"
        for k, n in enumerate(names)))
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True), (other / "masks").mkdir()
    reexport = read_image(VP / "images" / "Viral Pneumonia-1.png")[5:-5, 6:-2] ** 1.2
    Image.fromarray((reexport * 255).astype(np.uint8)).save(other / "images" / "renamed.png")
    shutil.copy(VP / "masks" / "Viral Pneumonia-1.png", other / "masks" / "renamed.png")
    for src in ("Viral Pneumonia-2.png", "Viral Pneumonia-4.png"):  # copies of training images: not listed
        shutil.copy(VP / "images" / src, other / "images" / src)
        shutil.copy(VP / "masks" / src, other / "masks" / src)
    png = tmp_path / "pairs.png"
    counts = held_copies.main([str(other), "--split", str(manifest), "--data", str(SAMPLE), "--png", str(png)])
    assert counts == [(str(other), 3, 1)]
    out = capsys.readouterr().out
    assert "renamed.png <-> Viral Pneumonia/images/Viral Pneumonia-1.png" in out
    assert Image.open(png).size == (2 * 256 + 8, 256 + 8)

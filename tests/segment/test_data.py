"""Pair discovery and reading in both mask conventions, and the seeded held-out split."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lungxray.errors import DatasetError
from lungxray.segment.data import find_pairs, holdout_split, load_pairs, read_pair

SAMPLE_VP = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample" / "Viral Pneumonia"


def _ellipse(h=64, w=64, cx=0.35):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - cx * w) / (0.15 * w)) ** 2 <= 1


def _write(path: Path, arr: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)


def test_both_mask_conventions_read_to_the_same_mask(tmp_path):
    rng = np.random.default_rng(0)
    lung = _ellipse()
    image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    rgb = np.repeat((lung * 255).astype(np.uint8)[..., None], 3, -1)
    # Radiography Database: RGB 0/255 in masks/; COVID-QU-Ex: grayscale 0/255 in "lung masks/".
    _write(tmp_path / "raddb" / "Viral Pneumonia" / "images" / "VP-1.png", image, "L")
    _write(tmp_path / "raddb" / "Viral Pneumonia" / "masks" / "VP-1.png", rgb, "RGB")
    _write(tmp_path / "quex" / "Train" / "Normal" / "images" / "n_1.png", image, "L")
    _write(tmp_path / "quex" / "Train" / "Normal" / "lung masks" / "n_1.png", (lung * 255).astype(np.uint8), "L")
    _write(tmp_path / "quex" / "Train" / "Normal" / "images" / "no_mask.png", image, "L")

    rad = find_pairs(tmp_path / "raddb")
    quex = find_pairs(tmp_path / "quex", source="qu-ex")
    assert [p.key for p in rad] == ["Viral Pneumonia/images/VP-1.png"]
    assert [p.key for p in quex] == ["Train/Normal/images/n_1.png"]  # the unmasked image is left out
    assert quex[0].source == "qu-ex" and quex[0].mask.parent.name == "lung masks"
    for pairs in (rad, quex):
        img, mask, _ = read_pair(pairs[0], (64, 64))
        assert img.dtype == np.uint8 and np.array_equal(img, image)
        assert mask.dtype == bool and np.array_equal(mask, lung)
    ps = load_pairs(rad + quex, (32, 32), progress=False)
    assert ps.images.shape == ps.masks.shape == (2, 32, 32)
    assert np.array_equal(ps.masks[0], ps.masks[1])
    s = ps.sample(0)
    assert set(s) == {"image", "mask", "label", "path"} and 0 <= s["image"].min() <= s["image"].max() <= 1


def test_real_sample_pairs_are_found_and_resized():
    pairs = find_pairs(SAMPLE_VP)
    assert len(pairs) == 10
    img, mask, _ = read_pair(pairs[0], (128, 128))
    assert img.shape == mask.shape == (128, 128)
    assert 0.1 < mask.mean() < 0.6


def test_no_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "x" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no image/mask pairs"):
        find_pairs(tmp_path / "x")


def test_holdout_split_is_seeded_keeps_duplicates_together_and_avoids_training_twins():
    ps = load_pairs(find_pairs(SAMPLE_VP), (32, 32), progress=False)
    keys = [p.key for p in ps.pairs]
    tr, held = holdout_split(ps, 0.3, seed=0)
    tr2, held2 = holdout_split(ps, 0.3, seed=0)
    assert np.array_equal(held, held2) and np.array_equal(tr, tr2)
    assert sorted(np.concatenate([tr, held]).tolist()) == list(range(len(ps)))
    assert 2 <= len(held) <= 4
    # Viral Pneumonia-249 and -250 are the same radiograph: never on both sides.
    i249, i250 = keys.index("images/Viral Pneumonia-249.png"), keys.index("images/Viral Pneumonia-250.png")
    assert (i249 in held) == (i250 in held)
    others = {tuple(holdout_split(ps, 0.3, seed=s)[1]) for s in range(6)}
    assert len(others) > 1  # the seed matters
    # An image that also appears among the other training sources is never held out.
    for s in range(6):
        _, held_o = holdout_split(ps, 0.3, seed=s, others=ps.hashes[:1])
        assert 0 not in held_o

"""The shipped lung U-Net loads and gives plausible masks on bundled real images."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lungxray.data.io import read_image, read_mask
from lungxray.data.split import manifest_fingerprint, read_manifest
from lungxray.segment import Segmenter, default_segmenter_path
from lungxray.segment.metrics import dice

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
VP = SAMPLE / "Viral Pneumonia"


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter.load()


def test_shipped_files_are_small_and_documented():
    weights = default_segmenter_path()
    assert weights.is_file() and weights.stat().st_size < 10 * 2**20
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["format"].startswith("lungxray-segmenter/") and meta["version"]
    assert meta["input_size"] == [256, 256]
    for name, v in meta["validation"].items():
        assert v["dice"]["mean"] >= 0.95, name
        assert np.isfinite(v["hd95"]["mean"])
    held = [h for h in meta["training"]["heldout"].values()]
    assert held and all(len(h["files"]) > 100 for h in held)


def _never_trained_on(meta: dict, name: str) -> bool:
    """Whether the U-Net's metadata shows it never trained on Viral Pneumonia image `name`: held out for its own
    validation, or left out because the classifier split it was kept from puts it in val or test."""
    if f"images/{name}" in [f for h in meta["training"]["heldout"].values() for f in h["files"]]:
        return True
    excluded = meta["training"].get("excluded_by_split")
    if not excluded:
        return False
    manifest = Path(__file__).resolve().parents[2] / "configs" / "splits" / excluded["manifest"]
    rows = read_manifest(manifest)
    assert manifest_fingerprint(rows) == excluded["fingerprint"]  # the split it was kept from, as committed
    return any(r.path == f"Viral Pneumonia/images/{name}" and r.split in ("val", "test") for r in rows)


@pytest.mark.parametrize("name", ["Viral Pneumonia-8.png", "Viral Pneumonia-249.png"])
def test_plausible_mask_that_matches_the_provided_one(seg, name):
    # Neither image was trained on (held out, or in the default split's val/test), so this is not a memory test.
    assert _never_trained_on(seg.meta, name)
    image = read_image(VP / "images" / name)
    ref = read_mask(VP / "masks" / name)
    (mask,) = seg.predict([image])
    assert mask.shape == image.shape and mask.dtype == bool
    assert 0.15 <= mask.mean() <= 0.6
    assert ndimage.label(mask, structure=np.ones((3, 3)))[1] <= 2
    (on_ref_grid,) = seg.predict([image], size=ref.shape)
    assert dice(on_ref_grid, ref) > 0.9


def test_images_without_masks_get_two_lung_fields(seg):
    images = [read_image(p) for p in sorted((SAMPLE / "Normal" / "images").glob("*.png"))[:4]]
    for mask in seg.predict(images):
        assert 0.15 <= mask.mean() <= 0.6
        assert 1 <= ndimage.label(mask, structure=np.ones((3, 3)))[1] <= 2


def test_the_shipped_classifier_names_the_shipped_unet_as_the_one_that_drew_its_masks():
    import hashlib

    meta = json.loads((default_segmenter_path().parent / "classifier.json").read_text())
    assert meta["masks"] == "predicted"
    assert meta["segmenter"]["sha256"] == hashlib.sha256(default_segmenter_path().read_bytes()).hexdigest()


def test_the_mask_cache_key_changes_with_the_mask_settings_not_with_the_notes(tmp_path):
    """Masks are cached by `segmenter_identity`: a threshold edited in the JSON must draw new masks, not reuse old ones."""
    import json
    import shutil

    from lungxray.segment import default_segmenter_path, segmenter_identity

    weights = tmp_path / "lung-unet.safetensors"
    shutil.copy(default_segmenter_path(), weights)
    shutil.copy(default_segmenter_path().with_suffix(".json"), weights.with_suffix(".json"))
    base = segmenter_identity(weights)
    assert base == segmenter_identity()  # the same files, the same key
    meta = json.loads(weights.with_suffix(".json").read_text())
    meta["training"] = {"note": "provenance only"}
    weights.with_suffix(".json").write_text(json.dumps(meta))
    assert segmenter_identity(weights) == base
    meta["threshold"] = 0.6
    weights.with_suffix(".json").write_text(json.dumps(meta))
    assert segmenter_identity(weights) != base

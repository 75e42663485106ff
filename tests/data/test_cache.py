"""Tests for lungxray.data.cache: content-keyed, memory-mapped, decode-once, crash-tolerant."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import lungxray.data.cache as cache_mod
from lungxray.data import read_image, read_mask, scan_dataset
from lungxray.data.cache import ArrayStore, default_cache_dir, file_digest, prepare
from lungxray.data.discovery import Sample
from lungxray.data.io import resize_image, resize_mask, to_uint8

SIZE = (48, 48)


@pytest.fixture
def dataset(tmp_path: Path, synth) -> Path:
    return synth.build_dataset(tmp_path / "ds", {c: 3 for c in synth.classes}, masks_for=("Viral Pneumonia",), seed=11)


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_mod, "read_image", refuse)
    monkeypatch.setattr(cache_mod, "read_mask", refuse)


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUNGXRAY_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LUNGXRAY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lungxray"


def test_tests_never_use_the_home_cache() -> None:
    assert Path.home() / ".cache" not in default_cache_dir().parents
    assert os.environ["LUNGXRAY_CACHE"] == str(default_cache_dir())


def test_prepare_uses_env_cache_when_no_dir_given(dataset: Path, _isolated_cache: Path) -> None:
    index = scan_dataset(dataset)
    prepare(index.samples, index.root, (40, 40), progress=False)
    assert (_isolated_cache / "40x40" / f"images-{cache_mod._store_tag()}" / "rows.u8").is_file()


def test_second_prepare_decodes_nothing(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = scan_dataset(dataset)
    first = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert first.ok.all() and (first.mask_rows >= 0).sum() == 3
    first_images = np.array(first.images[first.image_rows])
    first_masks = np.array(first.masks[first.mask_rows[first.mask_rows >= 0]])

    _forbid_decoding(monkeypatch)
    second = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert second.failures == [] and second.ok.all()
    np.testing.assert_array_equal(second.image_rows, first.image_rows)
    np.testing.assert_array_equal(second.mask_rows, first.mask_rows)
    np.testing.assert_array_equal(second.hashes, first.hashes)
    np.testing.assert_array_equal(second.images[second.image_rows], first_images)
    np.testing.assert_array_equal(second.masks[second.mask_rows[second.mask_rows >= 0]], first_masks)
    assert second.info == first.info


def test_renamed_copy_hits_the_same_row(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = scan_dataset(dataset)
    first = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    n_rows = first.images.shape[0]
    elsewhere = tmp_path / "moved"
    elsewhere.mkdir()
    shutil.copy(dataset / index.samples[4].path, elsewhere / "renamed-copy.png")

    _forbid_decoding(monkeypatch)
    again = prepare([Sample("renamed-copy.png", "Normal")], elsewhere, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert again.image_rows[0] == first.image_rows[4]
    assert again.images.shape[0] == n_rows, "no new row for identical bytes"
    assert again.digests[0] == first.digests[4]


def test_edited_file_is_a_miss(dataset: Path, tmp_path: Path, synth) -> None:
    index = scan_dataset(dataset)
    first = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    edited = np.zeros((64, 64), np.uint8)
    edited[:, :32] = 255
    synth.save_png(dataset / index.samples[0].path, edited)
    second = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert second.image_rows[0] == first.images.shape[0], "a new row is appended for new content"
    np.testing.assert_array_equal(second.image_rows[1:], first.image_rows[1:])
    row = np.asarray(second.images[second.image_rows[0]])
    assert row[:, :20].min() == 255 and row[:, 28:].max() == 0


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (64, 40)])
def test_images_are_uint8_memmaps_of_the_requested_size(dataset: Path, tmp_path: Path, size) -> None:
    index = scan_dataset(dataset)
    prep = prepare(index.samples, index.root, size, cache_dir=tmp_path / "c", progress=False)
    assert isinstance(prep.images, np.memmap) or (isinstance(prep.images, np.ndarray) and prep.images.base is not None)
    assert prep.images.dtype == np.uint8 and prep.images.shape == (9, *size)
    assert prep.masks.dtype == np.uint8 and prep.masks.shape == (3, *size)
    assert prep.size == tuple(size)
    assert (tmp_path / "c" / f"{size[0]}x{size[1]}").is_dir()
    for i, s in enumerate(index.samples):
        expected = to_uint8(resize_image(read_image(dataset / s.path), size))
        np.testing.assert_array_equal(prep.images[prep.image_rows[i]], expected)
        if s.mask_path:
            m = resize_mask(read_mask(dataset / s.mask_path), size)
            np.testing.assert_array_equal(prep.masks[prep.mask_rows[i]], m.astype(np.uint8))
        else:
            assert prep.mask_rows[i] == -1
    assert prep.info[0]["orig"] == [64, 64] and prep.info[0]["format"] == "png" and prep.info[0]["mode"] == "L"


def test_images_memmap_is_read_only(dataset: Path, tmp_path: Path) -> None:
    index = scan_dataset(dataset)
    prep = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    with pytest.raises((ValueError, TypeError)):
        prep.images[0, 0, 0] = 1


def test_digest_is_content_sha1(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert file_digest(p) == "a9993e364706816aba3e25717850c26c9cd0d89d"


# -------------------------------------------------------------------------------------- crash repair
def _prepared_store(dataset: Path, cache: Path):
    index = scan_dataset(dataset)
    prep = prepare(index.samples, index.root, SIZE, cache_dir=cache, progress=False)
    return index, prep, np.array(prep.images[prep.image_rows])


def test_crash_truncated_store_is_repaired_on_open(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    index, prep, before = _prepared_store(dataset, cache)
    folder = cache / f"{SIZE[0]}x{SIZE[1]}" / f"images-{cache_mod._store_tag()}"
    rows = folder / "rows.u8"
    row_bytes = SIZE[0] * SIZE[1]
    assert rows.stat().st_size == 9 * row_bytes
    with open(rows, "ab") as fh:  # a crash after appending 1.5 rows but before saving the index
        fh.write(b"\x07" * (row_bytes + row_bytes // 2))

    store = ArrayStore(folder, SIZE)
    assert len(store) == 9 and rows.stat().st_size == 9 * row_bytes

    # the store stays consistent: new rows land after the old ones, cached rows are unchanged
    store.append("new-key", np.full(SIZE, 9, np.uint8))
    store.save()
    assert rows.stat().st_size == 10 * row_bytes
    arr = store.array()
    np.testing.assert_array_equal(arr[prep.image_rows], before)
    assert (arr[9] == 9).all()


def test_rows_without_index_are_dropped(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    folder = cache / f"{SIZE[0]}x{SIZE[1]}" / f"images-{cache_mod._store_tag()}"
    folder.mkdir(parents=True)
    (folder / "rows.u8").write_bytes(b"\x01" * (3 * SIZE[0] * SIZE[1] + 5))  # crash before the first index save
    index, prep, before = _prepared_store(dataset, cache)
    assert prep.ok.all() and prep.images.shape[0] == 9
    for i, s in enumerate(index.samples):
        np.testing.assert_array_equal(before[i], to_uint8(resize_image(read_image(dataset / s.path), SIZE)))


def test_index_of_another_shape_or_version_is_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    s = ArrayStore(folder, (4, 4))
    s.append("a", np.ones((4, 4), np.uint8))
    s.save()
    doc = json.loads((folder / "index.json").read_text())
    doc["version"] = 999
    (folder / "index.json").write_text(json.dumps(doc))
    again = ArrayStore(folder, (4, 4))
    assert len(again) == 0 and (folder / "rows.u8").stat().st_size == 0


def test_store_rejects_wrong_rows(tmp_path: Path) -> None:
    s = ArrayStore(tmp_path / "s", (4, 4))
    with pytest.raises(ValueError):
        s.append("k", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError):
        s.append("k", np.zeros((4, 4), np.float32))
    assert len(s) == 0 and s.array().shape == (0, 4, 4)


def test_data_file_shorter_than_index_is_not_served_as_black(dataset: Path, tmp_path: Path) -> None:
    """The index is fsynced but rows.u8 is not: after a power loss it can hold fewer rows than the index lists.

    Rows the data file lacks must be dropped (and re-decoded), not zero-filled and served as black images.
    """
    cache = tmp_path / "c"
    index, prep, before = _prepared_store(dataset, cache)
    rows = cache / f"{SIZE[0]}x{SIZE[1]}" / f"images-{cache_mod._store_tag()}" / "rows.u8"
    os.truncate(rows, 4 * SIZE[0] * SIZE[1] + 100)  # 4 whole rows and part of a fifth survived
    again = prepare(index.samples, index.root, SIZE, cache_dir=cache, progress=False)
    assert again.ok.all()
    np.testing.assert_array_equal(np.asarray(again.images[again.image_rows]), before)


def test_deleted_data_file_is_rebuilt(dataset: Path, tmp_path: Path) -> None:
    """A user who deletes rows.u8 (to free space) but not index.json must not get a crash or black images."""
    cache = tmp_path / "c"
    index, prep, before = _prepared_store(dataset, cache)
    (cache / f"{SIZE[0]}x{SIZE[1]}" / f"images-{cache_mod._store_tag()}" / "rows.u8").unlink()
    again = prepare(index.samples, index.root, SIZE, cache_dir=cache, progress=False)
    assert again.ok.all()
    np.testing.assert_array_equal(np.asarray(again.images[again.image_rows]), before)


def test_failed_image_is_not_cached_and_retried_after_fix(dataset: Path, tmp_path: Path) -> None:
    index = scan_dataset(dataset)
    target = dataset / index.samples[0].path
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 3])
    first = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert not first.ok[0] and first.image_rows[0] == -1 and first.images.shape[0] == 8
    target.write_bytes(good)
    second = prepare(index.samples, index.root, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert second.ok.all() and second.failures == []


def test_sizes_have_separate_stores(dataset: Path, tmp_path: Path) -> None:
    index = scan_dataset(dataset)
    a = prepare(index.samples, index.root, (32, 32), cache_dir=tmp_path / "c", progress=False)
    b = prepare(index.samples, index.root, (40, 40), cache_dir=tmp_path / "c", progress=False)
    assert a.images.shape == (9, 32, 32) and b.images.shape == (9, 40, 40)
    np.testing.assert_array_equal(a.hashes, b.hashes)


def test_other_decoder_versions_get_stores_of_their_own(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    index = scan_dataset(dataset)
    prepare(index.samples, index.root, SIZE, cache, progress=False)
    mine = cache / f"{SIZE[0]}x{SIZE[1]}" / f"images-{cache_mod._store_tag()}"
    before = (mine / "rows.u8").read_bytes()
    doc = json.loads((mine / "index.json").read_text())
    assert doc["decoders"]["pillow"] not in ("", "absent") and doc["decoders"]["format"] == str(cache_mod._FORMAT_VERSION)
    # Another environment (another Pillow) sharing the cache folder decodes into its own store, leaving ours whole.
    monkeypatch.setattr(cache_mod, "_decoders", lambda: {**doc["decoders"], "pillow": "0.0-other"})
    decoded = []
    real = cache_mod.read_image
    monkeypatch.setattr(cache_mod, "read_image", lambda *a, **k: decoded.append(1) or real(*a, **k))
    prepare(index.samples, index.root, SIZE, cache, progress=False)
    assert len(decoded) == len(index.samples)  # decoded again, not served from the other versions' store
    assert (mine / "rows.u8").read_bytes() == before and len(list(mine.parent.glob("images-*"))) == 2


# The digest of what the cache stores for the bundled sample (PNG, RGB and grayscale), a DICOM and the Viral Pneumonia
# masks, at 64 px, under each _FORMAT_VERSION and set of decoder versions (Pillow, numpy, pydicom). A change to
# read_image, resize_image, to_uint8, read_mask or resize_mask that changes their output fails here: bump
# _FORMAT_VERSION in data/cache.py (old caches would otherwise be reused silently) and record the new digest. Other
# library versions get stores of their own (`_store_tag`), so the test is skipped where none is recorded for them.
DECODED_DIGESTS = {
    ("1", "13.0.0", "2.4.6", "3.0.2"): "254ecf3a37afc682049338e3180220f662a254eb4ccc76951d24f81a73a36014",
}


def test_what_the_cache_stores_changes_only_with_its_format_version(sample_dir: Path, tmp_path: Path, write_dicom) -> None:
    import hashlib

    h = hashlib.sha256()
    for path in sorted(sample_dir.glob("*/images/*.png")):
        h.update(to_uint8(resize_image(read_image(path), (64, 64))).tobytes())
    for path in sorted(sample_dir.glob("*/masks/*.png")):
        h.update(resize_mask(read_mask(path), (64, 64)).tobytes())
    pixels = (np.arange(80 * 96, dtype=np.uint16).reshape(80, 96) * 7) % 4096
    h.update(to_uint8(resize_image(read_image(write_dicom(tmp_path / "x.dcm", pixels)), (64, 64))).tobytes())
    d = cache_mod._decoders()
    key = (d["format"], d["pillow"], d["numpy"], d["pydicom"])
    if not any(k[1:] == key[1:] for k in DECODED_DIGESTS):
        pytest.skip(f"no digest recorded for decoders {key[1:]} (recorded: {sorted(k[1:] for k in DECODED_DIGESTS)})")
    assert DECODED_DIGESTS.get(key) == h.hexdigest(), (
        f"what the cache stores changed: bump _FORMAT_VERSION in lungxray/data/cache.py and record {h.hexdigest()} "
        "for it in DECODED_DIGESTS")


def test_the_cache_command_lists_stores_and_prunes_only_stale_ones(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from lungxray.cli import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("LUNGXRAY_CACHE", str(cache))
    index = scan_dataset(dataset)
    prepare(index.samples, index.root, SIZE, None, progress=False)  # this installation's stores
    size_dir = cache / f"{SIZE[0]}x{SIZE[1]}"
    for stale in ("images", "masks-predicted-abc123-0000dead"):  # an older lungxray's, another environment's
        (size_dir / stale).mkdir()
        (size_dir / stale / "rows.u8").write_bytes(b"\0" * 2048)
    listed = CliRunner().invoke(main, ["cache"])
    assert listed.exit_code == 0, listed.output
    assert f"images-{cache_mod._store_tag()}" in listed.output and "2 stale store(s)" in listed.output
    assert (size_dir / "images").is_dir()  # listing deletes nothing
    pruned = CliRunner().invoke(main, ["cache", "--prune"])
    assert pruned.exit_code == 0 and "deleted 2 stale store(s)" in pruned.output
    assert not (size_dir / "images").exists() and not (size_dir / "masks-predicted-abc123-0000dead").exists()
    assert (size_dir / f"images-{cache_mod._store_tag()}" / "rows.u8").is_file()
    assert len(prepare(index.samples, index.root, SIZE, None, progress=False).samples) == len(index.samples)

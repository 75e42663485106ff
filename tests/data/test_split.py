"""Tests for lungxray.data.split / hashing / split_dataset: leakage-free, stratified, reproducible splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import lungxray.data.cache as cache_mod
from lungxray.data import read_image, read_manifest, scan_dataset, split_dataset, write_manifest
from lungxray.data import duplicates
from lungxray.data.duplicates import duplicate_pairs
from lungxray.data.io import resize_image
from lungxray.data.hashing import (
    dhash,
    group_near_duplicates,
    hash_to_hex,
    hex_to_hash,
    near_duplicate_pairs,
)
from lungxray.data.split import (
    MANIFEST_COLUMNS,
    ManifestRow,
    assign_splits,
    cap_per_class,
    cross_split_pairs,
    make_split,
)
from lungxray.errors import DatasetError

CLASSES = ("COVID", "Normal", "Viral Pneumonia")
KNOWN_PAIRS = {
    ("COVID/images/COVID-1126.png", "COVID/images/COVID-90.png"),
    ("COVID/images/COVID-11.png", "COVID/images/COVID-160.png"),
    ("Viral Pneumonia/images/Viral Pneumonia-249.png", "Viral Pneumonia/images/Viral Pneumonia-250.png"),
}


# ------------------------------------------------------------------------------------------- hashing
def _flip_bits(h: np.ndarray, bits: list[int]) -> np.ndarray:
    out = h.copy()
    for b in bits:
        out[b // 64] ^= np.uint64(1) << np.uint64(63 - b % 64)
    return out


@pytest.mark.parametrize(("flipped", "paired"), [(0, True), (1, True), (4, True), (5, False), (40, False)])
def test_near_duplicate_pairs_threshold(flipped: int, paired: bool) -> None:
    rng = np.random.default_rng(flipped)
    a = rng.integers(0, 2**63, size=4, dtype=np.uint64)
    b = _flip_bits(a, list(rng.choice(256, flipped, replace=False)))
    pairs = near_duplicate_pairs(np.stack([a, b]), max_distance=4)
    assert pairs == ([(0, 1, flipped)] if paired else [])


def test_near_duplicate_groups_are_transitive_and_chunking_is_invisible() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(7, 4), dtype=np.uint64)
    # 0 ~ 1 (3 bits), 1 ~ 2 (3 other bits) so 0 and 2 are 6 bits apart, yet one group; 5 ~ 6 exact
    base[1] = _flip_bits(base[0], [1, 2, 3])
    base[2] = _flip_bits(base[1], [10, 20, 30])
    base[6] = base[5]
    pairs = near_duplicate_pairs(base, 4)
    assert sorted(pairs) == [(0, 1, 3), (1, 2, 3), (5, 6, 0)]
    assert sorted(near_duplicate_pairs(base, 4, chunk=2)) == sorted(pairs)
    groups = group_near_duplicates(7, pairs)
    assert groups.tolist() == [0, 0, 0, 1, 2, 3, 3]


def test_hash_hex_round_trip() -> None:
    h = dhash(np.random.default_rng(1).random((40, 50)).astype(np.float32))
    assert h.shape == (4,) and h.dtype == np.uint64
    s = hash_to_hex(h)
    assert len(s) == 64
    np.testing.assert_array_equal(hex_to_hash(s), h)


@pytest.fixture(scope="module")
def sample_hashes(sample_dir: Path) -> tuple[list[str], np.ndarray]:
    """dHashes of the sample, computed here from the files (independently of the cache and split code)."""
    index = scan_dataset(sample_dir)
    paths = [s.path for s in index.samples]
    return paths, np.stack([dhash(read_image(sample_dir / p)) for p in paths])


def test_sample_has_the_documented_near_duplicates(sample_hashes) -> None:
    paths, hashes = sample_hashes
    found = {tuple(sorted((paths[i], paths[j]))) for i, j, _ in near_duplicate_pairs(hashes, 4)}
    assert found == {tuple(sorted(p)) for p in KNOWN_PAIRS}


def test_dhash_tolerates_resizing(sample_dir: Path) -> None:
    from lungxray.data.io import resize_image

    for p in sorted((sample_dir / "Normal" / "images").glob("*.png"))[:4]:
        img = read_image(p)
        small = resize_image(img, (180, 180))
        d = int(sum(bin(int(w)).count("1") for w in dhash(img) ^ dhash(small)))
        assert d <= 4, f"{p.name}: {d} bits after resizing"
        assert sum(bin(int(w)).count("1") for w in dhash(img) ^ dhash(img[:, ::-1].copy())) > 4


# ------------------------------------------------------------------------------- splits of the sample
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7, 42, 1234])
def test_sample_split_never_separates_near_duplicates(sample_dir: Path, sample_hashes, seed: int) -> None:
    res = split_dataset(sample_dir, seed=seed, progress=False)
    split_of = {r.path: r.split for r in res.rows}
    group_of = {r.path: r.group for r in res.rows}
    assert len(split_of) == 30
    paths, hashes = sample_hashes
    pairs = near_duplicate_pairs(hashes, 4)
    assert len(pairs) == 3
    for i, j, _ in pairs:
        a, b = paths[i], paths[j]
        assert split_of[a] == split_of[b], f"seed {seed}: {a} in {split_of[a]} but {b} in {split_of[b]}"
        assert group_of[a] == group_of[b]
    # the re-export (other crop and contrast, 37 dHash bits apart) is kept together too
    a, b = "COVID/images/COVID-5.png", "COVID/images/COVID-155.png"
    assert group_of[a] == group_of[b] and split_of[a] == split_of[b]
    # the split's own bookkeeping agrees
    assert cross_split_pairs(res.rows, res.pairs) == []
    assert len(res.pairs) == 4
    # every class is present in train, and each class gets test and val images
    for cls in CLASSES:
        assert {r.split for r in res.rows if r.label == cls} == {"train", "val", "test"}


def test_sample_split_same_seed_is_identical(sample_dir: Path, tmp_path: Path) -> None:
    a = split_dataset(sample_dir, tmp_path / "a.csv", seed=5, progress=False)
    b = split_dataset(sample_dir, tmp_path / "b.csv", seed=5, progress=False)
    assert a.rows == b.rows
    assert a.fingerprint == b.fingerprint
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_sample_split_different_seeds_differ(sample_dir: Path) -> None:
    results = [split_dataset(sample_dir, seed=s, progress=False) for s in range(5)]
    assignments = {tuple(r.split for r in res.rows) for res in results}
    assert len(assignments) >= 4
    assert len({res.fingerprint for res in results}) == len(assignments)
    # but always the same images, in the same order
    assert len({tuple(r.path for r in res.rows) for res in results}) == 1


def test_sample_split_keeps_masks(sample_dir: Path) -> None:
    res = split_dataset(sample_dir, progress=False)
    for r in res.rows:
        if r.label == "Viral Pneumonia":
            assert r.mask_path == r.path.replace("/images/", "/masks/")
        else:
            assert r.mask_path is None


# ------------------------------------------------------------------------------ fractions (synthetic)
@pytest.mark.parametrize("fractions", [(0.7, 0.1, 0.2), (0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.25, 0.25), (1.0, 0.0, 0.0)])
def test_fractions_respected_per_class(synth_100: Path, fractions: tuple[float, float, float]) -> None:
    res = split_dataset(synth_100, fractions=fractions, seed=0, size=(64, 64), progress=False)
    assert res.pairs == [], "random synthetic images must not be near-duplicates"
    counts = res.counts()
    assert set(counts) == set(CLASSES)
    for cls in CLASSES:
        for name, frac in zip(("train", "val", "test"), fractions):
            got = counts[cls].get(name, 0)
            assert abs(got - 100 * frac) <= 2, f"{cls} {name}: {got} vs {100 * frac}"


def test_assign_splits_keeps_groups_whole_and_near_fractions() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.choice([1, 1, 1, 1, 2, 3, 5], size=400)  # groups of 1..5 images
    groups = np.repeat(np.arange(len(sizes)), sizes)
    labels = [CLASSES[g % 3] for g in groups]
    splits = assign_splits(labels, groups, (0.7, 0.1, 0.2), seed=3)
    for g in np.unique(groups):
        assert len({splits[i] for i in np.nonzero(groups == g)[0]}) == 1
    for cls in CLASSES:
        idx = [i for i, lab in enumerate(labels) if lab == cls]
        c = Counter(splits[i] for i in idx)
        assert abs(c["test"] - 0.2 * len(idx)) <= 5 and abs(c["val"] - 0.1 * len(idx)) <= 5


def test_mixed_class_group_goes_whole_to_one_split() -> None:
    # a near-duplicate pair across classes (a labelling error) is filed under its majority class, never split
    labels = ["COVID", "COVID", "Normal"] + ["COVID"] * 20 + ["Normal"] * 20
    groups = np.array([0, 0, 0] + list(range(1, 41)))
    for seed in range(10):
        splits = assign_splits(labels, groups, (0.5, 0.25, 0.25), seed=seed)
        assert len(set(splits[:3])) == 1


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (1.2, -0.1, -0.1), (0.7, 0.3), (0.7, 0.2, 0.2)])
def test_bad_fractions_rejected(fractions) -> None:
    with pytest.raises(DatasetError, match="split fractions"):
        assign_splits(["COVID", "Normal"], np.array([0, 1]), fractions)


def test_split_dataset_checks_fractions_before_reading_any_image(synth_100: Path, monkeypatch) -> None:
    import lungxray.data.api as data_api

    def no_hashing(*args, **kwargs):
        raise AssertionError("images were hashed before the fractions were checked")

    monkeypatch.setattr(data_api, "prepare", no_hashing)
    with pytest.raises(DatasetError, match="split fractions"):
        split_dataset(synth_100, fractions=(0.5, 0.5, 0.5), size=(64, 64), progress=False)


def test_make_split_rows(sample_hashes) -> None:
    paths, hashes = sample_hashes
    from lungxray.data.discovery import Sample

    samples = [Sample(p, p.split("/")[0]) for p in paths]
    rows, pairs = make_split(samples, hashes, seed=0)
    assert [r.path for r in rows] == paths
    assert len(pairs) == 3 and cross_split_pairs(rows, pairs) == []
    assert len({r.group for r in rows}) == 27


# ------------------------------------------------------------------------------------------- per_class
def test_per_class_subsamples_before_decoding_and_splitting(synth_100: Path, tmp_path: Path, monkeypatch) -> None:
    decoded: list[str] = []
    real = cache_mod.read_image

    def counting(path):
        decoded.append(str(path))
        return real(path)

    monkeypatch.setattr(cache_mod, "read_image", counting)
    res = split_dataset(synth_100, per_class=10, seed=1, size=(32, 32), cache_dir=tmp_path / "fresh", progress=False)
    assert len(decoded) == 30, "only the capped images are decoded"
    assert {c: sum(n.values()) for c, n in res.counts().items()} == {c: 10 for c in CLASSES}
    assert {c: n["test"] for c, n in res.counts().items()} == {c: 2 for c in CLASSES}
    assert {Path(p).relative_to(synth_100).as_posix() for p in decoded} == {r.path for r in res.rows}


def test_per_class_cap_is_seeded() -> None:
    from lungxray.data.discovery import Sample

    samples = [Sample(f"{c}/images/{c}-{i}.png", c) for c in CLASSES for i in range(50)]
    a = cap_per_class(samples, 5, seed=0)
    assert Counter(s.label for s in a) == {c: 5 for c in CLASSES}
    assert a == cap_per_class(samples, 5, seed=0)
    assert a != cap_per_class(samples, 5, seed=1)
    assert [samples.index(s) for s in a] == sorted(samples.index(s) for s in a), "original order kept"
    assert cap_per_class(samples, 500, seed=0) == samples
    assert cap_per_class(samples, None, seed=0) == samples
    with pytest.raises(DatasetError, match="positive"):
        cap_per_class(samples, -3, seed=0)


# -------------------------------------------------------------------------------------------- manifest
def test_manifest_round_trip(sample_dir: Path, tmp_path: Path) -> None:
    res = split_dataset(sample_dir, tmp_path / "split.csv", seed=2, progress=False)
    text = (tmp_path / "split.csv").read_text()
    assert text.splitlines()[0] == ",".join(MANIFEST_COLUMNS) == "path,mask_path,label,split,group"
    assert read_manifest(tmp_path / "split.csv") == res.rows
    assert read_manifest(tmp_path / "split.csv", CLASSES) == res.rows
    # and write_manifest alone round-trips too (names with spaces and commas survive CSV quoting)
    rows = res.rows + [ManifestRow("COVID/images/odd, name.png", None, "COVID", "test", 99)]
    write_manifest(tmp_path / "again.csv", rows)
    assert read_manifest(tmp_path / "again.csv") == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,label,split\nCOVID/images/a.png,COVID,train\n", r"missing columns \['mask_path', 'group'\]"),
        ("a,b\n1,2\n", "not a lungxray split manifest"),
        ("", "missing columns"),
        ("path,mask_path,label,split,group\nCOVID/a.png,,COVID,training,0\n", r"split must be one of .*'training'"),
        ("path,mask_path,label,split,group\nCOVID/a.png,,COVID,train,0\nX/b.png,,Lung_Opacity,test,1\n",
         r":3: label 'Lung_Opacity' is not one of"),
        ("path,mask_path,label,split,group\nCOVID/a.png,,COVID,train,zero\n", "group must be an integer"),
        ("path,mask_path,label,split,group\n", "manifest has no rows"),
        ("path,mask_path,label,split,group\nCOVID/a.png,,COVID,test,0\nNormal/b.png,,Normal,test,1\nCOVID/a.png,,COVID,test,0\n",
         r":4: COVID/a.png is listed twice \(first on line 2\)"),
        ("path,mask_path,label,split,group\n../../elsewhere/Normal/b.png,,Normal,test,0\n", "stay inside it"),
        ("path,mask_path,label,split,group\n/abs/Normal/b.png,,Normal,test,0\n", "must be relative"),
        ("path,mask_path,label,split,group\nNormal/b.png,../m.png,Normal,test,0\n", "mask_path '../m.png'"),
        ("path,mask_path,label,split,group\nC:\\data\\Normal\\b.png,,Normal,test,0\n", "must be relative"),
        ("path,mask_path,label,split,group\nNormal/b.png,,Normal\n", ":2: the row has fewer fields than the header"),
        ("path,mask_path,label,split,group\nNormal/b.png,,Normal,test,0\n./Normal/b.png,,Normal,test,0\n",
         r":3: Normal/b.png is listed twice"),
    ],
)
def test_read_manifest_rejects(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(DatasetError, match=message) as exc:
        read_manifest(p, CLASSES)
    assert "bad.csv" in str(exc.value)


def test_a_manifest_saved_with_a_byte_order_mark_reads_as_without(sample_dir: Path, tmp_path: Path) -> None:
    rows = split_dataset(sample_dir, tmp_path / "plain.csv", progress=False).rows
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.csv").read_bytes())  # as Excel saves CSV
    assert read_manifest(tmp_path / "bom.csv") == read_manifest(tmp_path / "plain.csv") == rows


def test_read_manifest_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="split manifest not found"):
        read_manifest(tmp_path / "nope.csv")


def test_split_refuses_to_overwrite(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    out.write_text("precious\n")
    with pytest.raises(DatasetError, match="exists.*overwrite=True"):
        split_dataset(sample_dir, out, progress=False)
    assert out.read_text() == "precious\n"
    res = split_dataset(sample_dir, out, overwrite=True, progress=False)
    assert read_manifest(out) == res.rows


def test_split_without_out_writes_nothing(sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = split_dataset(sample_dir, None, progress=False)
    assert len(res.rows) == 30
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- the re-export detector
def test_reexport_is_invisible_to_dhash_but_found_by_the_detector(sample_dir: Path, sample_hashes) -> None:
    paths, hashes = sample_hashes
    i, j = paths.index("COVID/images/COVID-5.png"), paths.index("COVID/images/COVID-155.png")
    bits = int(sum(bin(int(w)).count("1") for w in hashes[i] ^ hashes[j]))
    assert bits > 24, "the sample's re-export should be beyond any dHash threshold"
    images = [resize_image(read_image(sample_dir / p), (256, 256)) for p in paths]
    found = {(a, b) for a, b, _ in duplicate_pairs(images, hashes)}
    assert (min(i, j), max(i, j)) in found
    # and nothing else beyond the known dHash pairs: look-alike films of other patients stay apart
    known = {tuple(sorted((paths.index(a), paths.index(b)))) for a, b in KNOWN_PAIRS}
    assert found == known | {(min(i, j), max(i, j))}


def test_copies_across_two_sets_are_the_cross_pairs_the_whole_set_detector_finds(sample_dir: Path, sample_hashes) -> None:
    paths, hashes = sample_hashes
    images = [resize_image(read_image(sample_dir / p), (256, 256)) for p in paths]
    a = [k for k, p in enumerate(paths) if p != "COVID/images/COVID-155.png" and k % 2 == 0] or [0]
    b = [k for k in range(len(paths)) if k not in a]
    assert paths.index("COVID/images/COVID-155.png") in b and paths.index("COVID/images/COVID-5.png") in a
    whole = {(i, j) for i, j, _ in duplicate_pairs(images, hashes)}
    cross = {(i, j) if i in a else (j, i) for i, j in whole if (i in a) != (j in a)}
    got = duplicates.copies_across([images[k] for k in a], [images[k] for k in b], hashes[a], hashes[b])
    found = {(a[i], b[j]) for i, j, _ in got}
    assert (paths.index("COVID/images/COVID-5.png"), paths.index("COVID/images/COVID-155.png")) in found  # a re-export
    assert found == cross
    assert duplicates.copies_across(images[:2], []) == []


def test_detail_similarity_survives_contrast_shift_and_zoom_but_not_another_image(sample_dir: Path) -> None:
    from scipy.ndimage import affine_transform

    a = resize_image(read_image(sample_dir / "Normal" / "images" / "Normal-12.png"), (256, 256))
    other = resize_image(read_image(sample_dir / "Normal" / "images" / "Normal-13.png"), (256, 256))
    # a re-export: gamma, 6 px shift, 5% zoom about the centre
    c = np.array(a.shape) / 2
    warped = affine_transform(a ** 0.7, np.eye(2) / 1.05, offset=c - c / 1.05 + [0, 6], order=1, mode="nearest")
    d = lambda x: duplicates.detail(duplicates.thumbnail(x))  # noqa: E731
    assert duplicates.detail_similarity(d(a), d(warped)) >= duplicates.MIN_DETAIL_CORR + 0.1
    assert duplicates.detail_similarity(d(a), d(other)) < duplicates.MIN_DETAIL_CORR


def test_detector_refuses_tiny_images() -> None:
    with pytest.raises(ValueError, match="at least 128 px"):
        duplicates.thumbnail(np.zeros((32, 32)))


def test_a_manifest_must_be_a_csv_so_it_is_never_taken_for_an_image(sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"a manifest is a \.csv file"):
        split_dataset(sample_dir, tmp_path / "COVID-1.png", progress=False)
    assert not (tmp_path / "COVID-1.png").exists()


def test_a_manifest_written_with_backslashes_reads_as_posix_paths(tmp_path: Path) -> None:
    p = tmp_path / "win.csv"
    p.write_text("path,mask_path,label,split,group\nViral Pneumonia\\images\\a.png,Viral Pneumonia\\masks\\a.png,"
                 "Viral Pneumonia,test,0\n")
    row = read_manifest(p, CLASSES)[0]
    assert row.path == "Viral Pneumonia/images/a.png" and row.mask_path == "Viral Pneumonia/masks/a.png"

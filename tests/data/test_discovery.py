"""Tests for lungxray.data.discovery: finding the dataset, class folders, and pairing masks by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungxray.data import read_mask, scan_dataset
from lungxray.data.discovery import canonical_class, find_dataset_root, resolve_classes
from lungxray.errors import DatasetError

CLASSES = ("COVID", "Normal", "Viral Pneumonia")


# --------------------------------------------------------------------------------------- the sample
def test_sample_scans_to_ten_per_class_with_viral_pneumonia_masks(sample_dir: Path) -> None:
    index = scan_dataset(sample_dir)
    assert index.root == sample_dir
    assert index.classes == CLASSES
    assert dict(index.by_class()) == {"COVID": 10, "Normal": 10, "Viral Pneumonia": 10}
    assert index.layout == {c: "images/ + masks/" for c in CLASSES}
    for s in index.samples:
        assert (sample_dir / s.path).is_file()
        if s.label == "Viral Pneumonia":
            assert s.mask_path == s.path.replace("/images/", "/masks/")
            assert (sample_dir / s.mask_path).is_file()
        else:
            assert s.mask_path is None
    assert index.masks_without_image == []
    assert index.non_image_files == []
    assert index.ignored_dirs == []


def test_sample_is_sorted_by_class_order_then_path(sample_dir: Path) -> None:
    index = scan_dataset(sample_dir)
    keys = [(CLASSES.index(s.label), s.path) for s in index.samples]
    assert keys == sorted(keys)


def test_sample_class_order_follows_user_order(sample_dir: Path) -> None:
    index = scan_dataset(sample_dir, ["Viral Pneumonia", "COVID"])
    assert index.classes == ("Viral Pneumonia", "COVID")
    assert [s.label for s in index.samples] == ["Viral Pneumonia"] * 10 + ["COVID"] * 10
    assert index.ignored_dirs == ["Normal"]


# ------------------------------------------------------------------------------- masks paired by name
def test_masks_are_paired_by_file_name_not_position(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 2, "Normal": 2}, seed=1)
    vp = root / "Viral Pneumonia"
    rng = np.random.default_rng(7)
    for i in (1, 2, 3, 4):
        synth.save_png(vp / "images" / f"Viral Pneumonia-{i}.png", synth.noise_image(rng))
    # masks/: -1 missing, -99 extra; in sorted order mask k would be "paired" with the wrong image
    written = {}
    for i in (2, 3, 4, 99):
        m = synth.blob_mask(rng)
        written[f"Viral Pneumonia-{i}"] = m
        synth.save_mask(vp / "masks" / f"Viral Pneumonia-{i}.png", m)

    index = scan_dataset(root)
    vps = {Path(s.path).stem: s for s in index.samples if s.label == "Viral Pneumonia"}
    assert sorted(vps) == [f"Viral Pneumonia-{i}" for i in (1, 2, 3, 4)]
    assert vps["Viral Pneumonia-1"].mask_path is None
    for stem in ("Viral Pneumonia-2", "Viral Pneumonia-3", "Viral Pneumonia-4"):
        mask_path = vps[stem].mask_path
        assert mask_path == f"Viral Pneumonia/masks/{stem}.png"
        # the paired file really holds this image's mask (each mask is a different random ellipse)
        np.testing.assert_array_equal(read_mask(root / mask_path), written[stem])
    assert index.masks_without_image == ["Viral Pneumonia/masks/Viral Pneumonia-99.png"]
    assert all("Viral Pneumonia-99" not in s.path for s in index.samples)


def test_mask_pairing_ignores_case_and_extension(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 1, "Normal": 1, "Viral Pneumonia": 1}, seed=2)
    synth.save_mask(root / "Viral Pneumonia" / "masks" / "VIRAL PNEUMONIA-1.PNG", np.ones((64, 64), bool))
    index = scan_dataset(root)
    (vp,) = [s for s in index.samples if s.label == "Viral Pneumonia"]
    assert vp.mask_path == "Viral Pneumonia/masks/VIRAL PNEUMONIA-1.PNG"
    assert index.masks_without_image == []


@pytest.mark.parametrize("mask_dir", ["masks", "lung masks", "lung_masks"])
def test_mask_folder_names(tmp_path: Path, synth, mask_dir: str) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 1, "Normal": 1, "Viral Pneumonia": 2}, seed=3)
    synth.save_mask(root / "Viral Pneumonia" / mask_dir / "Viral Pneumonia-2.png", np.ones((64, 64), bool))
    index = scan_dataset(root)
    masks = {Path(s.path).name: s.mask_path for s in index.samples if s.label == "Viral Pneumonia"}
    assert masks == {"Viral Pneumonia-1.png": None, "Viral Pneumonia-2.png": f"Viral Pneumonia/{mask_dir}/Viral Pneumonia-2.png"}


# ------------------------------------------------------------------------------------------ layouts
def test_flat_layout(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 3, "Normal": 2, "Viral Pneumonia": 4}, flat=True)
    index = scan_dataset(root)
    assert dict(index.by_class()) == {"COVID": 3, "Normal": 2, "Viral Pneumonia": 4}
    assert index.layout == {c: "flat" for c in CLASSES}
    assert "COVID/COVID (1).png" in [s.path for s in index.samples]
    assert all(s.mask_path is None for s in index.samples)


def test_flat_layout_with_masks_folder(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(
        tmp_path / "ds", {"COVID": 2, "Normal": 2, "Viral Pneumonia": 2}, flat=True, masks_for=("Viral Pneumonia",)
    )
    index = scan_dataset(root)
    vps = [s for s in index.samples if s.label == "Viral Pneumonia"]
    assert len(vps) == 2, "files in masks/ must not become samples"
    assert [s.mask_path for s in vps] == [s.path.replace("Viral Pneumonia/", "Viral Pneumonia/masks/", 1) for s in vps]


@pytest.mark.parametrize(
    "folders",
    [
        ("COVID-19", "NORMAL", "Viral_Pneumonia"),
        ("covid", "normal", "viral_pneumonia"),
        ("COVID19", "Normal", "Viral-Pneumonia"),
        ("covid 19", "NORMAL", "VIRAL PNEUMONIA"),
    ],
)
def test_folder_aliases(tmp_path: Path, synth, folders: tuple[str, str, str]) -> None:
    counts = dict(zip(folders, (2, 3, 4)))
    root = synth.build_dataset(tmp_path / "ds", counts)
    index = scan_dataset(root)
    assert index.class_dirs == dict(zip(CLASSES, folders))
    assert dict(index.by_class()) == {"COVID": 2, "Normal": 3, "Viral Pneumonia": 4}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("COVID", "COVID"),
        ("COVID-19", "COVID"),
        ("covid_19", "COVID"),
        ("NORMAL", "Normal"),
        ("Viral_Pneumonia", "Viral Pneumonia"),
        ("viral-pneumonia", "Viral Pneumonia"),
        ("Lung_Opacity", "Lung_Opacity"),
        ("lung opacity", "Lung_Opacity"),
        ("images", None),
        ("Pneumonia", None),
        ("Non-COVID", None),
    ],
)
def test_canonical_class(name: str, expected: str | None) -> None:
    assert canonical_class(name) == expected


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_dataset_found_below_the_given_folder(tmp_path: Path, synth, depth: int) -> None:
    nested = tmp_path / "archive"
    for k in range(depth):
        nested = nested / ("COVID-19_Radiography_Dataset" if k == depth - 1 else f"level{k}")
    synth.build_dataset(nested, {"COVID": 1, "Normal": 1, "Viral Pneumonia": 1})
    (tmp_path / "archive" / "docs").mkdir()  # a decoy sibling without class folders
    assert find_dataset_root(tmp_path / "archive") == nested
    index = scan_dataset(tmp_path / "archive")
    assert index.root == nested
    assert sum(index.by_class().values()) == 3
    assert index.samples[0].path == "COVID/images/COVID-1.png", "paths are relative to the found root"


def test_shallowest_complete_dataset_wins(tmp_path: Path, synth) -> None:
    # a deeper folder with only two classes must not hide the complete one
    synth.build_dataset(tmp_path / "a" / "partial" / "x", {"COVID": 1, "Normal": 1})
    synth.build_dataset(tmp_path / "b" / "full", {c: 1 for c in CLASSES})
    assert find_dataset_root(tmp_path) == tmp_path / "b" / "full"


def test_two_complete_datasets_side_by_side_are_refused_naming_both(tmp_path: Path, synth) -> None:
    from lungxray.errors import DatasetError

    for version in ("v1-old", "v2-new"):
        synth.build_dataset(tmp_path / "multi" / version, {c: 1 for c in CLASSES})
    with pytest.raises(DatasetError, match=r"holds 2 datasets \(.*v1-old, .*v2-new\); give the one you mean"):
        find_dataset_root(tmp_path / "multi")
    assert find_dataset_root(tmp_path / "multi" / "v2-new") == tmp_path / "multi" / "v2-new"


def test_one_dataset_reached_through_a_symlink_beside_it_is_one(tmp_path: Path, synth) -> None:
    synth.build_dataset(tmp_path / "d" / "real", {c: 1 for c in CLASSES})
    (tmp_path / "d" / "latest").symlink_to(tmp_path / "d" / "real", target_is_directory=True)
    assert find_dataset_root(tmp_path / "d") in (tmp_path / "d" / "real", tmp_path / "d" / "latest")


# -------------------------------------------------------------------------------------- Lung_Opacity
def test_lung_opacity_ignored_by_default_and_included_on_request(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 2, "Normal": 2, "Viral Pneumonia": 2, "Lung_Opacity": 3})
    default = scan_dataset(root)
    assert default.ignored_dirs == ["Lung_Opacity"]
    assert "Lung_Opacity" not in default.by_class()
    assert not any(s.path.startswith("Lung_Opacity/") for s in default.samples)

    four = scan_dataset(root, [*CLASSES, "Lung_Opacity"])
    assert four.classes == (*CLASSES, "Lung_Opacity")
    assert four.ignored_dirs == []
    assert dict(four.by_class()) == {"COVID": 2, "Normal": 2, "Viral Pneumonia": 2, "Lung_Opacity": 3}


# ----------------------------------------------------------------------------------- class arguments
@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (None, CLASSES),
        ([], CLASSES),
        (["covid", "NORMAL"], ("COVID", "Normal")),
        (["Viral_Pneumonia", "COVID-19", "lung opacity"], ("Viral Pneumonia", "COVID", "Lung_Opacity")),
    ],
)
def test_resolve_classes(names, expected) -> None:
    assert resolve_classes(names) == expected


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [("Norml", "Normal"), ("COVD", "COVID"), ("Viral Pneumona", "Viral Pneumonia"), ("Lung Opacty", "Lung_Opacity")],
)
def test_unknown_class_suggests_nearest(bad: str, suggestion: str) -> None:
    with pytest.raises(DatasetError, match=f"unknown class '{bad}'.*Did you mean '{suggestion}'"):
        resolve_classes([bad, "Viral Pneumonia" if suggestion != "Viral Pneumonia" else "COVID"])


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["COVID", "covid-19"], "given twice"),
        (["COVID"], "at least two classes"),
        (["COVID", "Tuberculosis"], "unknown class 'Tuberculosis'"),
    ],
)
def test_resolve_classes_errors(names: list[str], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        resolve_classes(names)


def test_unknown_class_in_scan_is_a_dataset_error(sample_dir: Path) -> None:
    with pytest.raises(DatasetError, match="Did you mean 'Normal'"):
        scan_dataset(sample_dir, ["COVID", "Norml"])


# ------------------------------------------------------------------------------------ other files
def test_non_image_files_are_listed_and_never_samples(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 2, "Normal": 2, "Viral Pneumonia": 2}, masks_for=("Viral Pneumonia",))
    extras = {
        "COVID/images/notes.txt": b"radiologist notes",
        "COVID/images/COVID-1.png.bak": b"old copy",
        "Normal/images/Thumbs.db": b"\x00\x01",
        "Viral Pneumonia/masks/readme.md": b"# masks",
        "COVID.metadata.xlsx": b"PK\x03\x04",  # beside the class folders: not inside any class, not listed
    }
    for rel, data in extras.items():
        (root / rel).write_bytes(data)
    # hidden files (macOS resource forks, .DS_Store) are neither samples nor reported
    (root / "COVID" / "images" / "._COVID-1.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "Normal" / "images" / ".DS_Store").write_bytes(b"\x00")

    index = scan_dataset(root)
    assert dict(index.by_class()) == {"COVID": 2, "Normal": 2, "Viral Pneumonia": 2}
    assert sorted(index.non_image_files) == sorted(
        ["COVID/images/notes.txt", "COVID/images/COVID-1.png.bak", "Normal/images/Thumbs.db", "Viral Pneumonia/masks/readme.md"]
    )
    paths = {s.path for s in index.samples} | {s.mask_path for s in index.samples if s.mask_path}
    assert all(Path(p).suffix == ".png" and not Path(p).name.startswith(".") for p in paths)
    assert index.masks_without_image == []


@pytest.mark.parametrize("suffix", [".png", ".PNG", ".jpg", ".jpeg", ".JPG", ".dcm", ".dicom"])
def test_image_suffixes_become_samples(tmp_path: Path, synth, suffix: str) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 1, "Normal": 1, "Viral Pneumonia": 1})
    src = root / "COVID" / "images" / "COVID-1.png"
    src.rename(src.with_suffix(suffix))
    index = scan_dataset(root)
    assert [s.path for s in index.samples if s.label == "COVID"] == [f"COVID/images/COVID-1{suffix}"]

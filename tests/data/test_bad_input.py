"""Bad input: every problem a user can cause is a DatasetError / ImageReadError naming it, or is skipped and reported."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lungxray.data import inspect_dataset, read_image, read_mask, scan_dataset, split_dataset
from lungxray.data.cache import prepare
from lungxray.errors import DatasetError, ImageReadError, LungxrayError

CLASSES = ("COVID", "Normal", "Viral Pneumonia")


# --------------------------------------------------------------------------------- dataset folders
def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(DatasetError, match="no-such-dataset: no such file or folder"):
        scan_dataset(missing)


def test_path_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "data.zip"
    f.write_bytes(b"PK\x03\x04")
    with pytest.raises(DatasetError, match="data.zip: is a file"):
        scan_dataset(f)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="it is empty") as exc:
        scan_dataset(tmp_path)
    assert str(tmp_path) in str(exc.value)


def test_folder_without_class_folders_lists_found_and_expected(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "Pneumonia").mkdir()
    (tmp_path / "labels.csv").write_text("a,b\n")
    with pytest.raises(DatasetError) as exc:
        scan_dataset(tmp_path)
    msg = str(exc.value)
    assert "no COVID-19 Radiography Database class folders found" in msg
    for found in ("photos", "Pneumonia", "labels.csv"):
        assert found in msg, f"the message should list what was found ({found})"
    for expected in CLASSES:
        assert expected in msg, f"the message should list what was expected ({expected})"


def test_missing_class_folder_names_it_and_suggests_classes_option(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 2, "NORMAL": 2})
    with pytest.raises(DatasetError) as exc:
        scan_dataset(root)
    msg = str(exc.value)
    assert "['COVID', 'NORMAL']" in msg and "['Viral Pneumonia']" in msg and "classes=" in msg
    # and the hint works
    assert dict(scan_dataset(root, ["COVID", "Normal"]).by_class()) == {"COVID": 2, "Normal": 2}


def test_class_folders_without_images(tmp_path: Path) -> None:
    for c in CLASSES:
        (tmp_path / c / "images").mkdir(parents=True)
    (tmp_path / "COVID" / "images" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="contain no PNG/JPEG/DICOM images"):
        scan_dataset(tmp_path)


def test_one_empty_class_is_named(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 2, "Viral Pneumonia": 2})
    (root / "Normal" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no images for class\(es\) \['Normal'\]"):
        scan_dataset(root)


def test_errors_are_lungxray_errors() -> None:
    # the CLI prints LungxrayError without a traceback; both data errors must be one
    assert issubclass(DatasetError, LungxrayError) and issubclass(ImageReadError, LungxrayError)


# -------------------------------------------------------------------------------------- bad files
def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture
def broken_dataset(tmp_path: Path, synth) -> Path:
    """4 images per class; COVID-2 truncated, Normal-3 is a text file named .png."""
    root = synth.build_dataset(tmp_path / "ds", {c: 4 for c in CLASSES}, masks_for=("Viral Pneumonia",), seed=5)
    _truncate(root / "COVID" / "images" / "COVID-2.png")
    (root / "Normal" / "images" / "Normal-3.png").write_text("this is not an image\n" * 10)
    return root


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty file \(0 bytes\)"),
        (b"hello, I am a text file\n" * 20, "not a PNG, JPEG or DICOM"),
        (b"GIF89a" + b"\x00" * 200, "not a PNG, JPEG or DICOM"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "x.png"),  # PNG magic, garbage after it
    ],
)
def test_unreadable_bytes_raise_image_read_error(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as exc:
        read_image(p)
    assert str(p) in str(exc.value)


def test_truncated_png_raises_image_read_error(tmp_path: Path, synth) -> None:
    p = synth.save_png(tmp_path / "t.png", synth.noise_image(np.random.default_rng(0), (128, 128)))
    _truncate(p, 0.6)
    with pytest.raises(ImageReadError, match="corrupt or truncated") as exc:
        read_image(p)
    assert "t.png" in str(exc.value)


def test_missing_file_raises_image_read_error(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="cannot open"):
        read_image(tmp_path / "gone.png")


def test_prepare_skips_unreadable_and_warns(broken_dataset: Path, tmp_path: Path, caplog) -> None:
    index = scan_dataset(broken_dataset)
    assert len(index.samples) == 12, "bad files with an image suffix are still listed by discovery"
    with caplog.at_level(logging.WARNING, logger="lungxray.data.cache"):
        prep = prepare(index.samples, index.root, (32, 32), cache_dir=tmp_path / "cache", progress=False)
    failed = {p for p, _ in prep.failures}
    assert failed == {"COVID/images/COVID-2.png", "Normal/images/Normal-3.png"}
    ok = {s.path for s, good in zip(index.samples, prep.ok) if good}
    assert len(ok) == 10 and not (ok & failed)
    text = caplog.text
    assert "COVID-2.png" in text and "Normal-3.png" in text
    assert "skipped 2 unreadable image(s) of 12" in text


def test_inspect_counts_unreadable(broken_dataset: Path, tmp_path: Path) -> None:
    rep = inspect_dataset(broken_dataset, cache_dir=tmp_path / "cache", progress=False)
    assert sorted(u["path"] for u in rep["unreadable"]) == ["COVID/images/COVID-2.png", "Normal/images/Normal-3.png"]
    assert any("truncated" in u["error"] or "corrupt" in u["error"] for u in rep["unreadable"])
    assert any("not a PNG, JPEG or DICOM" in u["error"] for u in rep["unreadable"])
    pc = rep["per_class"]
    assert (pc["COVID"]["images"], pc["COVID"]["readable"]) == (4, 3)
    assert (pc["Normal"]["images"], pc["Normal"]["readable"]) == (4, 3)
    assert (pc["Viral Pneumonia"]["images"], pc["Viral Pneumonia"]["readable"]) == (4, 4)
    assert pc["Viral Pneumonia"]["usable_masks"] == 4


def test_split_excludes_unreadable_and_succeeds(broken_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    res = split_dataset(broken_dataset, out, cache_dir=tmp_path / "cache", progress=False)
    paths = {r.path for r in res.rows}
    assert len(paths) == 10
    assert "COVID/images/COVID-2.png" not in paths and "Normal/images/Normal-3.png" not in paths
    assert {p for p, _ in res.skipped} == {"COVID/images/COVID-2.png", "Normal/images/Normal-3.png"}
    assert "COVID-2.png" not in out.read_text()
    assert {c: sum(n.values()) for c, n in res.counts().items()} == {"COVID": 3, "Normal": 3, "Viral Pneumonia": 4}


# ------------------------------------------------------------------------------------------- masks
def test_mask_of_other_size_is_resized_and_binary(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {c: 1 for c in CLASSES})
    big = np.zeros((300, 200), bool)
    big[:, :100] = True  # left half is lung
    synth.save_mask(root / "Viral Pneumonia" / "masks" / "Viral Pneumonia-1.png", big)
    index = scan_dataset(root)
    prep = prepare(index.samples, index.root, (64, 64), cache_dir=tmp_path / "cache", progress=False)
    i = next(k for k, s in enumerate(index.samples) if s.label == "Viral Pneumonia")
    assert prep.mask_rows[i] >= 0
    m = np.asarray(prep.masks[prep.mask_rows[i]])
    assert m.shape == (64, 64)
    assert set(np.unique(m)) <= {0, 1}
    assert m[:, :31].all() and not m[:, 33:].any(), "the resized mask keeps the lung on the left half"
    assert prep.info[i]["mask_orig"] == [300, 200]

    direct = read_mask(root / "Viral Pneumonia" / "masks" / "Viral Pneumonia-1.png", shape=(64, 64))
    assert direct.dtype == bool and direct.shape == (64, 64)
    np.testing.assert_array_equal(direct, m.astype(bool))


def test_unreadable_mask_keeps_image(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {c: 2 for c in CLASSES}, masks_for=("Viral Pneumonia",))
    bad = root / "Viral Pneumonia" / "masks" / "Viral Pneumonia-1.png"
    bad.write_text("not a mask")
    rep = inspect_dataset(root, cache_dir=tmp_path / "cache", progress=False)
    assert [u["path"] for u in rep["unreadable_masks"]] == ["Viral Pneumonia/masks/Viral Pneumonia-1.png"]
    assert rep["unreadable"] == []
    assert rep["per_class"]["Viral Pneumonia"]["readable"] == 2
    assert rep["per_class"]["Viral Pneumonia"]["with_mask"] == 2
    assert rep["per_class"]["Viral Pneumonia"]["usable_masks"] == 1


def test_an_unreadable_mask_is_counted_as_none_and_never_paired_in_a_split(tmp_path: Path, synth) -> None:
    from click.testing import CliRunner

    from lungxray.cli import main
    from lungxray.data import split_dataset

    root = synth.build_dataset(tmp_path / "ds", {c: 4 for c in CLASSES}, masks_for=("Viral Pneumonia",))
    (root / "Viral Pneumonia" / "masks" / "Viral Pneumonia-1.png").write_text("not a mask")
    res = CliRunner().invoke(main, ["data", "inspect", str(root)])
    assert res.exit_code == 0, res.output
    vp_line = next(line for line in res.output.splitlines() if line.startswith("Viral Pneumonia"))
    assert vp_line.split()[4:7] == ["4", "4", "3"]  # images, readable, masks (the unreadable one is not a mask)
    assert "images without a mask: 9 (kept; masks are paired by file name) (an unreadable mask counts as none)" in res.output
    rows = split_dataset(root, tmp_path / "split.csv", cache_dir=tmp_path / "cache", progress=False).rows
    paired = {r.path: r.mask_path for r in rows if r.label == "Viral Pneumonia"}
    assert paired["Viral Pneumonia/images/Viral Pneumonia-1.png"] is None
    assert sum(m is not None for m in paired.values()) == 3


def test_mask_without_image_is_reported(tmp_path: Path, synth) -> None:
    root = synth.build_dataset(tmp_path / "ds", {c: 2 for c in CLASSES}, masks_for=("Viral Pneumonia",))
    synth.save_mask(root / "Viral Pneumonia" / "masks" / "Viral Pneumonia-77.png", np.ones((64, 64), bool))
    rep = inspect_dataset(root, cache_dir=tmp_path / "cache", progress=False)
    assert rep["masks_without_image"] == ["Viral Pneumonia/masks/Viral Pneumonia-77.png"]
    assert rep["total_images"] == 6


def test_non_rgb_mask_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "m.png"
    p.write_bytes(b"DICM" * 100)
    with pytest.raises(ImageReadError, match="a mask must be a PNG or JPEG"):
        read_mask(p)


def test_inspect_on_a_file_of_a_bad_image_suffix_never_raises_other_errors(tmp_path: Path, synth) -> None:
    """Whatever the bytes, prepare reports them; it never crashes with a non-lungxray exception."""
    root = synth.build_dataset(tmp_path / "ds", {c: 2 for c in CLASSES})
    img = root / "COVID" / "images"
    rng = np.random.default_rng(3)
    (img / "zero.png").write_bytes(b"")
    (img / "random.jpg").write_bytes(rng.bytes(500))
    (img / "jpeg-head.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(100))
    (img / "dicom-head.dcm").write_bytes(b"\x00" * 128 + b"DICM" + rng.bytes(64))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img / "tiny.png")
    rep = inspect_dataset(root, cache_dir=tmp_path / "cache", progress=False)
    assert sorted(Path(u["path"]).name for u in rep["unreadable"]) == ["dicom-head.dcm", "jpeg-head.jpg", "random.jpg", "zero.png"]
    assert rep["per_class"]["COVID"]["readable"] == 3


def test_masked_training_names_a_mask_file_that_cannot_be_read() -> None:
    from types import SimpleNamespace

    from lungxray.errors import ConfigError
    from lungxray.inference import check_masks

    rows = [SimpleNamespace(path="VP/images/a.png", mask_path="VP/masks/a.png"),
            SimpleNamespace(path="VP/images/b.png", mask_path="VP/masks/b.png")]
    data = SimpleNamespace(rows=rows, prepared=SimpleNamespace(mask_rows=np.array([-1, 0])))
    with pytest.raises(ConfigError, match=r"1 of them have a mask file that cannot be read \(first: VP/masks/a.png\)"):
        check_masks(data, np.array([0, 1]), "provided")

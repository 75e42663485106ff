"""Tests for lungxray.data.dicom: DICOM radiographs built from a real sample PNG read back like the PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungxray.data import read_image, scan_dataset  # noqa: E402
from lungxray.data.cache import prepare  # noqa: E402
from lungxray.data.dicom import read_dicom  # noqa: E402
from lungxray.errors import ImageReadError  # noqa: E402

def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def png_image(sample_dir: Path) -> np.ndarray:
    """A real radiograph (float [0, 1]); 224x224, so orientation errors are visible."""
    return read_image(sample_dir / "Normal" / "images" / "Normal-24.png")


@pytest.fixture(scope="module")
def stored12(png_image: np.ndarray) -> np.ndarray:
    """The PNG as 12-bit stored values, like a real DX detector."""
    return np.rint(png_image * 4095).astype(np.uint16)


def test_fixture_image_is_not_symmetric(png_image: np.ndarray) -> None:
    # otherwise the orientation checks below would prove nothing
    assert corr(png_image, png_image[:, ::-1]) < 0.95
    assert corr(png_image, png_image[::-1]) < 0.95
    assert corr(png_image, png_image.T) < 0.95


def test_monochrome2_matches_png(tmp_path: Path, png_image: np.ndarray, write_dicom) -> None:
    stored = np.rint(png_image * 65535).astype(np.uint16)
    p = write_dicom(tmp_path / "m2.dcm", stored)
    out = read_dicom(p)
    assert out.dtype == np.float32 and out.shape == png_image.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert corr(out, png_image) > 0.99
    assert np.abs(out - png_image).mean() < 0.05, "same intensity scale (bone bright)"


def test_an_8_bit_dicom_reads_exactly_as_the_png_of_the_same_pixels(tmp_path: Path, sample_dir: Path, write_dicom) -> None:
    png = sample_dir / "Normal" / "images" / "Normal-24.png"
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"))
    out = read_dicom(write_dicom(tmp_path / "8bit.dcm", pixels, bits_stored=8))
    np.testing.assert_allclose(out, read_image(png), atol=1e-6)  # not stretched to its own percentiles
    inverted = read_dicom(write_dicom(tmp_path / "m1.dcm", 255 - pixels, bits_stored=8, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted, read_image(png), atol=1e-6)


def test_read_image_sniffs_dicom_whatever_the_name(tmp_path: Path, png_image: np.ndarray, stored12, write_dicom) -> None:
    p = write_dicom(tmp_path / "film.png", stored12, bits_stored=12)
    np.testing.assert_allclose(read_image(p), read_dicom(p))
    assert corr(read_image(p), png_image) > 0.99


def test_monochrome1_inverted_pixels_match_monochrome2(tmp_path: Path, png_image, stored12, write_dicom) -> None:
    m2 = read_dicom(write_dicom(tmp_path / "m2.dcm", stored12, bits_stored=12))
    m1 = read_dicom(write_dicom(tmp_path / "m1.dcm", (4095 - stored12).astype(np.uint16), "MONOCHROME1", bits_stored=12))
    np.testing.assert_allclose(m1, m2, atol=1e-4)
    assert corr(m1, png_image) > 0.99


@pytest.mark.parametrize(
    ("slope", "intercept"),
    [(1.0, -1024.0), (2.0, 0.0), (0.5, 100.0), (-1.0, 4095.0)],  # last: a negative slope inverts values
)
def test_rescale_slope_intercept(tmp_path: Path, png_image, stored12, slope: float, intercept: float, write_dicom) -> None:
    p = write_dicom(tmp_path / "r.dcm", stored12, bits_stored=12, RescaleSlope=slope, RescaleIntercept=intercept)
    out = read_dicom(p)
    expected_sign = 1 if slope > 0 else -1
    assert expected_sign * corr(out, png_image) > 0.99
    if slope > 0:
        plain = read_dicom(write_dicom(tmp_path / "plain.dcm", stored12, bits_stored=12))
        np.testing.assert_allclose(out, plain, atol=1e-4)


def test_signed_pixels(tmp_path: Path, png_image: np.ndarray, write_dicom) -> None:
    stored = np.rint(png_image * 4000 - 2000).astype(np.int16)
    out = read_dicom(write_dicom(tmp_path / "s.dcm", stored, signed=True))
    assert corr(out, png_image) > 0.99


def test_window_covering_the_data_keeps_the_image(tmp_path: Path, png_image, stored12, write_dicom) -> None:
    p = write_dicom(tmp_path / "w.dcm", stored12, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    out = read_dicom(p)
    assert corr(out, png_image) > 0.99
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_narrow_window_clips_like_a_viewer(tmp_path: Path, stored12, write_dicom) -> None:
    center, width = 2000.0, 1000.0
    p = write_dicom(tmp_path / "w.dcm", stored12, bits_stored=12, WindowCenter=center, WindowWidth=width)
    out = read_dicom(p)
    expected = np.clip((stored12 - (center - width / 2)) / width, 0, 1)
    assert (stored12 < center - width / 2).any() and (stored12 > center + width / 2).any(), "window must clip both ends"
    np.testing.assert_allclose(out, expected, atol=0.01)


def test_window_and_rescale_together(tmp_path: Path, png_image, stored12, write_dicom) -> None:
    # window is in rescaled (modality) units: stored * 2 - 1000 spans -1000..7190
    p = write_dicom(
        tmp_path / "wr.dcm", stored12, bits_stored=12, RescaleSlope=2.0, RescaleIntercept=-1000.0,
        WindowCenter=3095.0, WindowWidth=8190.0,
    )
    assert corr(read_dicom(p), png_image) > 0.99


def test_multiframe_rejected(tmp_path: Path, stored12, write_dicom) -> None:
    p = write_dicom(tmp_path / "mf.dcm", np.stack([stored12, stored12]), bits_stored=12)
    with pytest.raises(ImageReadError, match="multi-frame DICOM \\(2 frames\\)"):
        read_image(p)


def test_dicom_without_pixel_data_rejected(tmp_path: Path, stored12, write_dicom) -> None:
    p = write_dicom(tmp_path / "sr.dcm", stored12, pixel_data=False)
    with pytest.raises(ImageReadError, match="no pixel data") as exc:
        read_image(p)
    assert "sr.dcm" in str(exc.value)


def test_colour_dicom_rejected(tmp_path: Path, stored12, write_dicom) -> None:
    p = write_dicom(tmp_path / "c.dcm", stored12, photometric="PALETTE COLOR")
    with pytest.raises(ImageReadError, match="not a grayscale radiograph"):
        read_image(p)


def test_pixel_data_shorter_than_header_rejected(tmp_path: Path, stored12, write_dicom) -> None:
    p = write_dicom(tmp_path / "short.dcm", stored12[:100], bits_stored=12, Rows=224)
    with pytest.raises(ImageReadError, match="short.dcm"):
        read_image(p)


def test_huge_dicom_refused_before_decoding(tmp_path: Path, write_dicom) -> None:
    p = write_dicom(tmp_path / "big.dcm", np.zeros((4, 4), np.uint16), Rows=60000, Columns=60000)
    with pytest.raises(ImageReadError, match="(?i)decompression bomb"):
        read_image(p)


@pytest.mark.parametrize("window", [{"WindowCenter": 100, "WindowWidth": 0}, {"WindowCenter": 100, "WindowWidth": -5}])
def test_invalid_window_is_handled(tmp_path: Path, stored12, window: dict, write_dicom) -> None:
    """Invalid metadata is the file's problem: an ImageReadError or a sensible image, never a bare ValueError.

    (A bare ValueError escapes `prepare`, so one bad DICOM would crash `lungxray data inspect` with a traceback.)
    """
    p = write_dicom(tmp_path / "badwin.dcm", stored12, bits_stored=12, **window)
    try:
        out = read_image(p)
    except ImageReadError as exc:
        assert "badwin.dcm" in str(exc)
    else:
        assert out.shape == stored12.shape and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_dicom_dataset_is_discovered_and_prepared(tmp_path: Path, synth, stored12, write_dicom) -> None:
    root = synth.build_dataset(tmp_path / "ds", {"COVID": 2, "Normal": 2, "Viral Pneumonia": 2})
    write_dicom(root / "COVID" / "images" / "COVID-3.dcm", stored12, bits_stored=12)
    write_dicom(root / "Normal" / "images" / "Normal-3.dcm", np.stack([stored12] * 2), bits_stored=12)
    index = scan_dataset(root)
    assert "COVID/images/COVID-3.dcm" in [s.path for s in index.samples]
    prep = prepare(index.samples, index.root, (32, 32), cache_dir=tmp_path / "cache", progress=False)
    assert [p for p, _ in prep.failures] == ["Normal/images/Normal-3.dcm"]
    i = [s.path for s in index.samples].index("COVID/images/COVID-3.dcm")
    assert prep.ok[i] and prep.info[i]["format"] == "dicom" and prep.info[i]["orig"] == [224, 224]


def test_an_empty_window_is_no_window(tmp_path: Path, stored12, write_dicom) -> None:
    """Some exports carry WindowCenter/WindowWidth with no value (type 2): read as if they were absent."""
    plain = read_dicom(write_dicom(tmp_path / "p.dcm", stored12, bits_stored=12))
    empty = read_dicom(write_dicom(tmp_path / "e.dcm", stored12, bits_stored=12, WindowCenter=None, WindowWidth=None))
    np.testing.assert_array_equal(empty, plain)

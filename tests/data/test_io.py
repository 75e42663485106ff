"""Tests for lungxray.data.io: PNG/JPEG readers, intensity scaling, mask binarisation, bomb refusal, sniffing."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from lungxray.data.io import (
    read_image,
    read_mask,
    resize_image,
    resize_mask,
    sniff_bytes,
    sniff_format,
    to_uint8,
)
from lungxray.errors import ImageReadError


def _save(path: Path, img: Image.Image, fmt: str | None = None, **kw) -> Path:
    img.save(path, format=fmt, **kw)
    return path


# ---------------------------------------------------------------------------------------- intensity
def test_16bit_png_is_scaled_to_unit_range(tmp_path: Path) -> None:
    arr = np.array([[0, 32768, 65535]] * 4, dtype=np.uint16)
    p = _save(tmp_path / "a16.png", Image.fromarray(arr))
    assert Image.open(p).mode.startswith("I"), "the fixture must really be a 16-bit PNG"
    out = read_image(p)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_allclose(out[0], [0.0, 0.5, 1.0], atol=1e-4)


def test_16bit_precision_is_kept(tmp_path: Path) -> None:
    # two values 1/65535 apart would collapse to one if the reader went through 8 bits
    arr = np.array([[30000, 30001, 30002, 30100]], dtype=np.uint16)
    out = read_image(_save(tmp_path / "p.png", Image.fromarray(arr)))
    assert len(np.unique(out)) == 4
    np.testing.assert_allclose(out[0], arr[0] / 65535.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "pixel", "expected"),
    [
        ("L", 0, 0.0),
        ("L", 255, 1.0),
        ("L", 128, 128 / 255),
        ("RGB", (200, 200, 200), 200 / 255),
        ("RGB", (255, 0, 0), 0.299),  # ITU-R 601 luma
        ("RGBA", (255, 255, 255, 255), 1.0),  # opaque white stays white
        ("RGBA", (255, 255, 255, 0), 0.0),  # transparent padding becomes black, not white
        ("RGBA", (200, 200, 200, 128), 100 / 255),  # half transparent: composited on black
        ("LA", (255, 0), 0.0),
        ("LA", (255, 255), 1.0),
    ],
)
def test_modes_convert_to_2d_gray(tmp_path: Path, mode: str, pixel, expected: float) -> None:
    img = Image.new(mode, (5, 3), pixel)
    out = read_image(_save(tmp_path / "x.png", img))
    assert out.shape == (3, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=2 / 255)


def test_rgb_chest_film_keeps_layout(sample_dir: Path) -> None:
    # sample COVID/Normal files are 224x224 RGB with R == G == B
    p = sample_dir / "COVID" / "images" / "COVID-5.png"
    rgb = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
    out = read_image(p)
    assert out.shape == rgb.shape[:2]
    np.testing.assert_allclose(out, rgb.mean(-1) / 255.0, atol=1 / 255)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    img.info["transparency"] = 1
    p = _save(tmp_path / "p.png", img, transparency=1)
    np.testing.assert_allclose(read_image(p), 0.0)


def test_jpeg_reads(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (48, 1)).astype(np.uint8)
    p = _save(tmp_path / "r.jpg", Image.fromarray(ramp), quality=95)
    out = read_image(p)
    assert out.shape == (48, 64)
    np.testing.assert_allclose(out, ramp / 255.0, atol=0.03)
    assert out[:, -1].mean() > 0.95 and out[:, 0].mean() < 0.05


def test_real_sample_reads_in_unit_range(sample_dir: Path) -> None:
    for cls, side in (("COVID", 224), ("Normal", 224), ("Viral Pneumonia", 299)):
        for p in sorted((sample_dir / cls / "images").glob("*.png"))[:2]:
            out = read_image(p)
            assert out.shape == (side, side) and out.dtype == np.float32
            assert 0.0 <= out.min() < 0.3 and 0.8 < out.max() <= 1.0


# -------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize(
    ("pixel", "lung"),
    [
        ((255, 255, 255), True),
        ((0, 255, 0), True),  # lung in one channel only still counts
        ((0, 0, 128), True),
        ((0, 100, 0), False),
        ((127, 127, 127), False),
        ((0, 0, 0), False),
    ],
)
def test_rgb_mask_binarisation(tmp_path: Path, pixel, lung: bool) -> None:
    p = _save(tmp_path / "m.png", Image.new("RGB", (6, 4), pixel))
    m = read_mask(p)
    assert m.dtype == bool and m.shape == (4, 6)
    assert m.all() if lung else not m.any()


@pytest.mark.parametrize(("value", "lung"), [(255, True), (128, True), (127, False), (0, False)])
def test_grayscale_mask_binarisation(tmp_path: Path, value: int, lung: bool) -> None:
    m = read_mask(_save(tmp_path / "m.png", Image.new("L", (3, 3), value)))
    assert m.all() if lung else not m.any()


def test_16bit_mask_binarisation(tmp_path: Path) -> None:
    arr = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16)
    m = read_mask(_save(tmp_path / "m.png", Image.fromarray(arr)))
    assert m.tolist() == [[False, False, True, True]]


def test_mask_resized_to_shape_nearest(tmp_path: Path) -> None:
    arr = np.zeros((256, 256), np.uint8)
    arr[64:192, 32:128] = 255
    m = read_mask(_save(tmp_path / "m.png", Image.fromarray(arr)), shape=(64, 64))
    assert m.shape == (64, 64) and m.dtype == bool
    assert m.sum() == 32 * 24
    assert m[16:48, 8:32].all()


def test_jpeg_mask_with_compression_noise_is_binary(tmp_path: Path) -> None:
    arr = np.zeros((64, 64), np.uint8)
    arr[16:48, 16:48] = 255
    m = read_mask(_save(tmp_path / "m.jpg", Image.fromarray(arr), quality=70))
    assert m.dtype == bool
    assert (m == (arr > 127)).mean() > 0.98


# ------------------------------------------------------------------------------------------- resize
def test_resize_image_and_mask() -> None:
    img = np.linspace(0, 1, 100 * 80, dtype=np.float32).reshape(100, 80)
    out = resize_image(img, (50, 40))
    assert out.shape == (50, 40) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.all(np.diff(out[:, 0]) > 0), "row order (orientation) is kept"
    np.testing.assert_array_equal(resize_image(img, (100, 80)), img)
    mask = np.zeros((100, 80), bool)
    mask[:50] = True
    rm = resize_mask(mask, (10, 8))
    assert rm.dtype == bool and rm[:5].all() and not rm[5:].any()


@pytest.mark.parametrize(("value", "expected"), [(0.0, 0), (1.0, 255), (0.5, 128), (-0.2, 0), (1.3, 255), (0.2, 51)])
def test_to_uint8(value: float, expected: int) -> None:
    assert to_uint8(np.array([value], np.float32))[0] == expected


# --------------------------------------------------------------------------------- decompression bomb
def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 8x8 PNG whose IHDR is patched to claim width x height (CRC recomputed)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 7).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch):
    """Make any pixel decoding fail loudly (with an exception the readers do not translate)."""

    def boom(self, *a, **k):
        raise RuntimeError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)


@pytest.mark.parametrize(
    ("width", "height"),
    [(60000, 60000), (20000, 16), (16, 20000), (9000, 8000)],  # PIL's own limit / side limit / our pixel limit
)
def test_decompression_bomb_refused_before_decoding(tmp_path: Path, no_decoding, width: int, height: int) -> None:
    p = _png_claiming(tmp_path / "bomb.png", width, height)
    assert struct.unpack(">II", p.read_bytes()[16:24]) == (width, height)
    with pytest.raises(ImageReadError, match="(?i)decompression bomb") as exc:
        read_image(p)
    assert "bomb.png" in str(exc.value)
    with pytest.raises(ImageReadError, match="(?i)decompression bomb"):
        read_mask(p)


def test_patched_header_is_otherwise_valid(tmp_path: Path) -> None:
    # control for the bomb test: the same patching with a small size gives a readable PNG header
    p = _png_claiming(tmp_path / "ok.png", 8, 8)
    assert read_image(p).shape == (8, 8)


# ------------------------------------------------------------------------------------------ sniffing
def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("writer", "name", "kind"),
    [
        (_png_bytes, "image.jpg", "png"),
        (_png_bytes, "image.dcm", "png"),
        (_png_bytes, "image", "png"),
        (_jpeg_bytes, "image.png", "jpeg"),
        (_jpeg_bytes, "image.jpeg", "jpeg"),
    ],
)
def test_format_is_sniffed_from_content_not_name(tmp_path: Path, writer, name: str, kind: str) -> None:
    arr = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    p = tmp_path / name
    p.write_bytes(writer(arr))
    assert sniff_format(p) == kind
    out = read_image(p)
    assert out.shape == arr.shape
    np.testing.assert_allclose(out, arr / 255.0, atol=0.03)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "png"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 10, "jpeg"),
        (b"\x00" * 128 + b"DICM", "dicom"),
        (b"\x00" * 127 + b"DICM", None),
        (b"GIF89a", None),
        (b"", None),
    ],
)
def test_sniff_bytes(head: bytes, kind: str | None) -> None:
    assert sniff_bytes(head) == kind

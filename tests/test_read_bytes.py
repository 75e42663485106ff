"""Readers take bytes as well as paths: an upload is decoded in memory, identically, with no temporary file."""

import io
import tempfile

import numpy as np
import pytest
from PIL import Image

from lungxray.data.io import read_image
from lungxray.errors import ImageReadError
from lungxray.serve.images import decode_upload


@pytest.mark.parametrize("kind", ["png", "jpeg", "png16", "dicom"])
def test_bytes_and_path_decode_identically(kind, tmp_path, sample_dir, dicom_bytes):
    src = sorted(sample_dir.glob("Normal/images/*.png"))[0]
    gray = np.asarray(Image.open(src).convert("L"))
    if kind == "dicom":
        data = dicom_bytes(gray.astype(np.uint16) * 16, bits_stored=12)
    else:
        buf = io.BytesIO()
        img = Image.fromarray(gray.astype(np.uint16) * 257) if kind == "png16" else Image.fromarray(gray)
        img.save(buf, "JPEG" if kind == "jpeg" else "PNG")
        data = buf.getvalue()
    path = tmp_path / f"x.{kind}"
    path.write_bytes(data)
    from_path, from_bytes = read_image(path), read_image(data)
    assert from_bytes.dtype == np.float32 and from_bytes.shape == gray.shape
    assert np.array_equal(from_path, from_bytes)


def test_upload_is_decoded_without_touching_the_disk(monkeypatch, tmp_path, sample_dir):
    data = sorted(sample_dir.glob("COVID/images/*.png"))[0].read_bytes()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))  # any temporary file would fail
    image, rgb = decode_upload(data, "chest.png")
    assert image.ndim == 2 and rgb is not None and rgb.shape == (64, 64, 3)


def test_bad_bytes_are_named_by_the_upload_not_a_file():
    with pytest.raises(ImageReadError, match=r"^chest\.png: not a readable PNG"):
        read_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, name="chest.png")
    with pytest.raises(ImageReadError, match=r"^upload: not a PNG, JPEG or DICOM"):
        read_image(b"hello")

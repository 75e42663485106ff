"""DICOM end to end: a bundled PNG re-encoded as DICOM (pydicom) predicts exactly like the PNG.

The DICOMs carry a window (centre 128, width 256) spanning the PNG's full 0-255 range, so a
correct reader (rescale -> window -> MONOCHROME1 inversion) must reproduce the PNG's pixels.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lungxray.cli import main
from lungxray.data.io import read_image
from lungxray.predict import Predictor

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
# Both span the full 0-255 range (checked below), one 224x224 RGB, one 299x299 grayscale.
PNGS = [SAMPLE / "COVID" / "images" / "COVID-9.png", SAMPLE / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png"]


def dicom_from_png(write_dicom, path: Path, png: Path, photometric: str = "MONOCHROME2", rescale: bool = False,
                   window: bool = True) -> Path:
    """Re-encode an 8-bit PNG as a 16-bit (12 stored) single-frame DX DICOM."""
    u8 = np.asarray(Image.open(png).convert("L"), dtype=np.uint16)
    values = 255 - u8 if photometric == "MONOCHROME1" else u8  # MONOCHROME1: high values are dark
    stored = values * 4 + 100 if rescale else values  # undone by slope 0.25, intercept -25
    extra = {"PatientID": "TEST"}
    if rescale:
        extra.update(RescaleSlope="0.25", RescaleIntercept="-25", RescaleType="US")
    if window:
        extra.update(WindowCenter="128", WindowWidth="256")
    return write_dicom(path, stored, photometric, bits_stored=12, **extra)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, untrained_checkpoint) -> Path:
    """An untrained, seeded CNN: PNG/DICOM agreement needs identical inputs, not a good model."""
    return untrained_checkpoint(tmp_path_factory.mktemp("dcm") / "cnn")


@pytest.fixture(scope="module")
def predictor(ckpt) -> Predictor:
    return Predictor.load(ckpt, cam=True)


def test_fixture_pngs_span_the_full_range():
    for png in PNGS:
        arr = read_image(png)
        assert arr.min() == 0.0 and arr.max() == 1.0, png


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("rescale", [False, True], ids=["raw", "rescaled"])
@pytest.mark.parametrize("png", PNGS, ids=lambda p: p.stem)
def test_dicom_predicts_like_the_png(predictor, tmp_path, png, photometric, rescale, write_dicom):
    dcm = dicom_from_png(write_dicom, tmp_path / "study.dcm", png, photometric, rescale)
    np.testing.assert_allclose(read_image(dcm), read_image(png), rtol=0, atol=1e-6)
    a, b = predictor.predict_paths([png, dcm])
    assert b.prediction == a.prediction
    np.testing.assert_allclose(list(b.probabilities.values()), list(a.probabilities.values()), rtol=0, atol=1e-6)
    np.testing.assert_allclose(b.cam, a.cam, atol=1e-4)


def test_dicom_without_window_uses_a_robust_range(ckpt, tmp_path, write_dicom):
    dcm = dicom_from_png(write_dicom, tmp_path / "nowin.dcm", PNGS[0], "MONOCHROME2", rescale=True, window=False)
    (r,) = Predictor.load(ckpt).predict_paths([dcm])
    assert abs(sum(r.probabilities.values()) - 1) < 1e-6 and r.image.shape == (224, 224)


def test_cli_on_a_folder_mixing_png_and_dicom(ckpt, tmp_path, write_dicom):
    """DICOM sniffed by content (no extension needed), name clashes kept apart, non-image DICOM reported."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PNGS[0], src / "COVID-9.png")
    dicom_from_png(write_dicom, src / "COVID-9.dcm", PNGS[0], "MONOCHROME1", rescale=True)
    dicom_from_png(write_dicom, src / "IM0001", PNGS[1])  # no extension, as scanners often write them
    sr = Dataset()  # a structured report: DICOM, but no pixels
    sr.file_meta = FileMetaDataset()
    sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID, sr.SOPInstanceUID, sr.Modality = sr.file_meta.MediaStorageSOPClassUID, generate_uid(), "SR"
    sr.save_as(src / "report.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", str(src), "--model", str(ckpt), "--out", str(out), "--cam"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable file(s)" in res.output
    with open(out / "predictions.csv", newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert set(rows) == {"COVID-9.png", "COVID-9.dcm", "IM0001"}
    for col in ("prediction", "COVID", "Normal", "Viral Pneumonia"):
        assert rows["COVID-9.dcm"][col] == rows["COVID-9.png"][col]
    assert sorted(p.name for p in out.glob("*.png")) == ["COVID-9.dcm.png", "COVID-9.png", "IM0001.png"]

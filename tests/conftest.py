"""Shared fixtures: the bundled real sample, a per-session cache folder (never ~/.cache), a stand-in segmenter,
a tiny checkpoint and a DICOM writer."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "examples" / "radiography-sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled 30-image sample of the COVID-19 Radiography Database (Kaggle layout)."""
    assert SAMPLE_DIR.is_dir(), f"bundled sample missing: {SAMPLE_DIR}"
    return SAMPLE_DIR


class StandInSegmenter:
    """Follows lungxray's one segmenter protocol, `predict(images, size=None) -> list of bool masks`, without
    weights: every mask is a centred ellipse (`shape="ellipse"`), the image's left half (`"left-half"`, easy to
    tell from a provided mask) or the ellipse's non-black pixels (`"bright-ellipse"`: an ellipse mostly blacked out gives
    an empty mask, as the real U-Net finds no lungs where they were blacked out). Counts the calls and the images,
    and lists the images' shapes (`sizes`)."""

    def __init__(self, shape: str = "ellipse"):
        if shape not in ("ellipse", "left-half", "bright-ellipse"):
            raise ValueError(shape)
        self.shape, self.calls, self.images, self.sizes = shape, 0, 0, []

    def predict(self, images, size=None):
        import numpy as np

        self.calls += 1
        out = []
        for im in images:
            self.images += 1
            self.sizes.append(tuple(np.asarray(im).shape))
            h, w = size or np.asarray(im).shape
            if self.shape == "left-half":
                m = np.zeros((h, w), bool)
                m[:, : w // 2] = True
            else:
                yy, xx = np.mgrid[:h, :w]
                m = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1
                if self.shape == "bright-ellipse":
                    pixels = np.asarray(im, np.float32)
                    if pixels.shape != (h, w):
                        from lungxray.data.io import resize_image

                        pixels = resize_image(pixels, (h, w))
                    bright = m & (pixels > 0.02)
                    m = bright if bright.sum() > m.sum() / 2 else np.zeros_like(m)  # mostly black: no lungs
            out.append(m)
        return out


@pytest.fixture
def stand_in_segmenter() -> type[StandInSegmenter]:
    """The class of a weight-free stand-in segmenter (see `StandInSegmenter`); call it for an instance."""
    return StandInSegmenter


DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def _dicom(target, pixels, photometric: str = "MONOCHROME2", bits_stored: int = 16, signed: bool = False,
           pixel_data: bool = True, **elements):
    """Write a single- or multi-frame uncompressed grayscale DICOM (pydicom 3) to a path, or return its bytes when
    `target` is None. `elements` set any further attribute (RescaleSlope=..., WindowCenter=..., Rows=...)."""
    import io

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = "DX", "Test^Phantom"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    if pixel_data:
        ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    if target is None:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.fixture(scope="session")
def write_dicom():
    """`write_dicom(path, pixels, photometric=, bits_stored=, signed=, pixel_data=, **elements) -> path`: the one
    DICOM writer of the tests."""
    return _dicom


@pytest.fixture(scope="session")
def dicom_bytes():
    """`dicom_bytes(pixels, ...) -> bytes`: the same DICOM as `write_dicom`, in memory (uploads)."""
    return lambda pixels, **kw: _dicom(None, pixels, **kw)


def _untrained(stem, masks: str = "none", seed: int = 0, classes=None, **model_args):
    """An untrained, seeded 32-px CNN saved as `<stem>.safetensors` + `.json` (the global RNG is left untouched)."""
    import torch

    from lungxray.checkpoint import save_checkpoint
    from lungxray.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model("cnn", input_size=32, classes=classes, **model_args)
    return save_checkpoint(Path(stem), model.eval(), {"masks": masks, "data": {"fingerprint": f"untrained-{seed}"}})


@pytest.fixture(scope="session")
def untrained_checkpoint():
    """`untrained_checkpoint(stem, masks="none", seed=0, classes=None, **model_args) -> weights path`: a tiny
    checkpoint for tests where prediction needs weights, not good ones."""
    return _untrained


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lungxray-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch: pytest.MonkeyPatch, _session_cache_dir: Path) -> Path:
    """Every test caches decoded images in a per-session temporary folder, never in ~/.cache."""
    monkeypatch.setenv("LUNGXRAY_CACHE", str(_session_cache_dir))
    return _session_cache_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN fitted for a few steps at 32 px on the whole sample (seconds, not a real training run), saved as
    a checkpoint with an OOD guard fitted on the sample's own features. Shared by the export and server tests."""
    import numpy as np
    import torch

    from lungxray.checkpoint import save_checkpoint
    from lungxray.data.io import read_image, resize_image, to_uint8
    from lungxray.models import create_model
    from lungxray.ood import FeatureGuard, guard_path, penultimate_features

    classes = ["COVID", "Normal", "Viral Pneumonia"]
    files = sorted(SAMPLE_DIR.glob("*/images/*.png"))
    x = torch.from_numpy(np.stack([to_uint8(resize_image(read_image(f), (32, 32))) for f in files])).float() / 255
    x = x[:, None]
    y = torch.tensor([classes.index(f.parent.parent.name) for f in files])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains ~10x faster on one thread when the machine is busy
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model("cnn", input_size=32, classes=classes, channels=(8, 16, 16), dense=(16,), dropout=0.0)
            opt = torch.optim.Adam(model.parameters(), lr=3e-3)
            for _ in range(25):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    run = tmp_path_factory.mktemp("tiny") / "run"
    run.mkdir()
    save_checkpoint(run / "best", model, {"masks": "none", "data": {"fingerprint": "sample-fixture"}})
    feats = penultimate_features(model, x)[0].numpy()
    FeatureGuard.fit(feats[::2], feats[1::2]).save(guard_path(run))
    return run

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
    weights: every mask is a centred ellipse (`shape="ellipse"`) or the image's left half (`"left-half"`, easy to
    tell from a provided mask). Counts the calls and the images it was given."""

    def __init__(self, shape: str = "ellipse"):
        if shape not in ("ellipse", "left-half"):
            raise ValueError(shape)
        self.shape, self.calls, self.images = shape, 0, 0

    def predict(self, images, size=None):
        import numpy as np

        self.calls += 1
        out = []
        for im in images:
            self.images += 1
            h, w = size or np.asarray(im).shape
            if self.shape == "left-half":
                m = np.zeros((h, w), bool)
                m[:, : w // 2] = True
            else:
                yy, xx = np.mgrid[:h, :w]
                m = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1
            out.append(m)
        return out


@pytest.fixture
def stand_in_segmenter() -> type[StandInSegmenter]:
    """The class of a weight-free stand-in segmenter (see `StandInSegmenter`); call it for an instance."""
    return StandInSegmenter


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

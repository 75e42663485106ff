"""Shared fixtures: the bundled real sample and a per-session cache folder (never ~/.cache)."""

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


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lungxray-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch: pytest.MonkeyPatch, _session_cache_dir: Path) -> Path:
    """Every test caches decoded images in a per-session temporary folder, never in ~/.cache."""
    monkeypatch.setenv("LUNGXRAY_CACHE", str(_session_cache_dir))
    return _session_cache_dir

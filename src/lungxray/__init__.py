"""lungxray: chest X-ray classification (COVID-19 / Normal / Viral Pneumonia) done carefully."""

__version__ = "0.1.0"

DEFAULT_CLASSES: tuple[str, ...] = ("COVID", "Normal", "Viral Pneumonia")
"""Canonical class names in canonical order (CSV columns, JSON, plots)."""

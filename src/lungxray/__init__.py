"""lungxray: chest X-ray classification (COVID-19 / Normal / Viral Pneumonia) done carefully.

    import lungxray
    model = lungxray.load()                      # the shipped lung-only classifier
    print(model.predict("chest.png").prediction)  # also a PIL image, numpy array, tensor, DICOM bytes or a list
"""

__version__ = "0.1.0"

DEFAULT_CLASSES: tuple[str, ...] = ("COVID", "Normal", "Viral Pneumonia")
"""Canonical class names in canonical order (CSV columns, JSON, plots)."""


def load(model=None, *, device: str = "cpu", runtime: str = "torch", onnx_path=None):
    """Load a classifier (default: the shipped one); see `lungxray.api.load`."""
    from .api import load as _load

    return _load(model, device=device, runtime=runtime, onnx_path=onnx_path)


def __getattr__(name: str):
    # `lungxray.segment(x)` is the callable subpackage (see lungxray/segment/__init__.py), imported on first use.
    if name == "segment":
        import importlib

        return importlib.import_module(".segment", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

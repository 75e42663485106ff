"""DICOM reader: radiograph pixel data -> float32 in [0, 1], display-ready."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import ImageReadError
from .limits import MAX_PIXELS, check_dims

# Transfer syntaxes whose pixel data needs an optional decoder package, and what to install.
_DECODER_HINT = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg (or pillow with JPEG)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}


def read_dicom(source: str | Path | BinaryIO, name: str | None = None) -> np.ndarray:
    """Read a single-frame grayscale DICOM radiograph (a path or an open binary file) as (H, W) float32 in [0, 1].

    Applies, in order: rescale slope/intercept (modality LUT), the VOI LUT or window when the file
    has one (otherwise: 8-bit data over its full range 0-255, as a PNG is read; deeper data a robust 0.5-99.5
    percentile min-max), and inversion for MONOCHROME1 so that bone is always bright.
    """
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:  # pragma: no cover - pydicom is a dependency
        raise ImageReadError("reading DICOM needs pydicom: pip install pydicom") from None
    path = name or str(source)  # how messages name it
    try:
        ds = pydicom.dcmread(source if hasattr(source, "read") else str(source), force=False)
    except InvalidDicomError as exc:
        raise ImageReadError(f"{path}: not a readable DICOM file ({exc})") from None
    except Exception as exc:  # a damaged file makes the parser fail in many ways (struct, zlib, Unicode...)
        raise ImageReadError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    try:
        # Elements are parsed on first access, so malformed values surface here, not in dcmread.
        has_pixels = "PixelData" in ds
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        modality = ds.get("Modality", "?")
    except Exception as exc:  # noqa: BLE001 - same: any parser failure means an unusable header
        raise ImageReadError(f"{path}: invalid DICOM header ({type(exc).__name__}: {exc})") from None
    if not has_pixels:
        raise ImageReadError(f"{path}: DICOM has no pixel data (not an image: {modality})")
    if frames > 1:
        raise ImageReadError(f"{path}: multi-frame DICOM ({frames} frames); export a single frame")
    check_dims(path, cols, rows)
    assert rows * cols <= MAX_PIXELS
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(f"{path}: photometric interpretation {photometric} is not a grayscale radiograph")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises several types when a decoder is missing
        tsuid = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
        hint = _DECODER_HINT.get(tsuid)
        if hint:
            raise ImageReadError(
                f"{path}: compressed DICOM (transfer syntax {tsuid}) needs a decoder: pip install {hint}"
            ) from None
        raise ImageReadError(f"{path}: cannot decode DICOM pixel data ({exc})") from None
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: DICOM pixel array has shape {pixels.shape}, expected one 2-D frame")

    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    has_lut = "VOILUTSequence" in ds
    # An element present but empty (type 2 in some exports) is no window: the fallbacks below apply.
    has_window = ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, "")
    try:
        bits_stored = int(ds.get("BitsStored", 0) or 0)
        rescaled = float(ds.get("RescaleSlope", 1) or 1) != 1 or float(ds.get("RescaleIntercept", 0) or 0) != 0
        arr = apply_modality_lut(pixels, ds).astype(np.float64)
        if has_lut:
            arr = apply_voi_lut(arr, ds, index=0).astype(np.float64)
            lo, hi = float(arr.min()), float(arr.max())
        elif has_window:
            center = float(_first(ds.WindowCenter))
            width = float(_first(ds.WindowWidth))
            if not np.isfinite([center, width]).all() or width < 1:
                raise ValueError(f"window center {center}, width {width}")
            # DICOM PS3.3 C.11.2.1.2 linear window: [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] -> [0, 1].
            lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
        elif 0 < bits_stored <= 8 and not rescaled:
            # 8-bit data (a secondary-capture export of a PNG or JPEG) is read as a PNG is, over its full range:
            # the same picture gives the same model input whichever way it arrives.
            lo, hi = 0.0, float(2 ** bits_stored - 1)
        else:
            lo, hi = (float(v) for v in np.percentile(arr, [0.5, 99.5]))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ImageReadError(f"{path}: invalid rescale or window (VOI LUT) values ({exc})") from None
    if not np.isfinite([lo, hi]).all():
        raise ImageReadError(f"{path}: DICOM pixel values are not finite")
    out = np.clip((arr - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(arr)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def _first(value):
    """First item of a DICOM multi-valued element, or the value itself."""
    try:
        return value[0] if not isinstance(value, (str, bytes)) and len(value) else value
    except TypeError:
        return value

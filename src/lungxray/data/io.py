"""Readers for X-ray images and lung masks.

Every reader returns a 2-D float32 array in [0, 1] (images) or a bool array (masks), or raises
`ImageReadError` with a message that says what is wrong with the file. Sizes are checked from the
header before pixels are decoded, so a decompression bomb is refused without being expanded.
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError
from .limits import MAX_PIXELS, MAX_SIDE, check_dims

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
Source = Union[str, Path, bytes]
"""What the readers take: a file's path, or its content (an upload) as bytes."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def sniff_format(path: str | Path) -> str | None:
    """Return "png", "jpeg", "dicom" or None from the file's first bytes (never from its name)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot open ({exc.strerror or exc})") from None
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> str | None:
    """Identify PNG, JPEG or DICOM from leading bytes; None when it is none of them."""
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


def _opened(source: Source, name: str | None = None) -> tuple[str | Path | BinaryIO, str]:
    """(what PIL/pydicom can open, the label for messages): bytes are read from memory, never a temporary file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), name or "upload"
    return source, name or str(source)


def _sniff(source: Source) -> str | None:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return sniff_bytes(bytes(source[:132]))
    return sniff_format(source)


LOW_BITS_MAX = 4096
"""A 16-bit image whose values all lie below this holds 12-bit (or fewer) data: read over 0-65535 it is black."""


def check_bit_depth(values: np.ndarray, path: str | Path) -> None:
    """Refuse 16-bit (or wider) pixels that only use the lowest 12 bits (a detector's raw 10-12-bit values, e.g. a
    DICOM's `pixel_array`, or 8-bit values, saved or passed without scaling): read over the 16-bit range they are
    an almost black image, which would be classified without complaint. (14-bit data reads at a quarter of the
    range: dark, but still an image; it passes.) A constant image is left to the out-of-distribution guard."""
    hi = int(values.max(initial=0))
    if 0 < hi < LOW_BITS_MAX and int(values.min(initial=0)) < hi:
        raise ImageReadError(
            f"{path}: 16-bit image whose values all lie below {LOW_BITS_MAX} (largest {hi} of 65535): this looks like "
            "data of 12 bits or fewer stored in 16, which would read as an almost black image. Scale it to the "
            "full 16-bit range (or to 8 bits) first, or give the original DICOM file, whose window lungxray applies")


def _pil_to_float(img: Image.Image, path: str | Path) -> np.ndarray:
    """Convert any PIL mode to grayscale float32 in [0, 1], keeping 16-bit precision."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        values = np.asarray(img, dtype=np.uint16)
        check_bit_depth(values, path)
        arr = values.astype(np.float32) / 65535.0
    elif mode == "I":
        # 32-bit integer PNGs almost always hold 16-bit data.
        arr = np.asarray(img, dtype=np.float64)
        check_bit_depth(arr, path)
        hi = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        arr = (np.clip(arr, 0, None) / hi).astype(np.float32)
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    else:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            # Composite on black so transparent padding does not turn white.
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (0, 0, 0, 255))
            img = Image.alpha_composite(background, img)
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if arr.ndim != 2:
        raise ImageReadError(f"{path}: decoded to shape {arr.shape}, expected a 2-D image")
    if not np.isfinite(arr).all():
        raise ImageReadError(f"{path}: decoded pixels contain NaN or infinity")
    return arr


def _open_pil(path: str | Path | BinaryIO, label: str | None = None) -> Image.Image:
    path_label = label or str(path)
    try:
        with warnings.catch_warnings():
            # PIL's own bomb warning becomes an error: we check dimensions ourselves below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        check_dims(path_label, *img.size)
        img.load()
        return img
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{path_label}: refused, too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path_label}: not a readable PNG/JPEG image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{path_label}: corrupt or truncated image ({exc})") from None


PIL_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, AssertionError, SyntaxError, EOFError)
"""What Pillow raises, loading or converting a damaged image that still opened (a broken PNG chunk: SyntaxError; a
palette image without a palette: AssertionError): the file's fault, reported as an ImageReadError."""


@contextmanager
def _converting(path: str | Path):
    """PIL's mode conversions fail in internal ways on damaged files that still open (a palette image without
    a palette raises AssertionError in `convert("RGB")`): those are the file's fault, so say so."""
    try:
        yield
    except ImageReadError:
        raise
    except PIL_READ_ERRORS as exc:
        raise ImageReadError(f"{path}: corrupt image ({type(exc).__name__}: {exc})") from None


def _is_empty_file(path) -> bool:
    try:
        return os.path.getsize(path) == 0
    except (OSError, TypeError, ValueError):
        return False


def read_image(source: Source, name: str | None = None) -> np.ndarray:
    """Read a PNG, JPEG or DICOM X-ray as a 2-D float32 array in [0, 1].

    Args:
        source: an image file's path, or its content as bytes (an upload: decoded in memory); the format is
            sniffed from the content, never from a name.
        name: how messages name it (default: the path, or "upload" for bytes).
    Returns:
        (H, W) float32 array, 0 = black.
    Raises:
        ImageReadError: unreadable, corrupt, unsupported or oversized input.
    """
    handle, label = _opened(source, name)
    kind = _sniff(source)
    if kind == "dicom":
        from .dicom import read_dicom

        return read_dicom(handle, name=label)
    if kind is None:
        empty = len(source) == 0 if isinstance(source, (bytes, bytearray, memoryview)) else _is_empty_file(source)
        raise ImageReadError(f"{label}: empty file (0 bytes)" if empty
                             else f"{label}: not a PNG, JPEG or DICOM file (unrecognised content)")
    img = _open_pil(handle, label)
    with _converting(label):
        return _pil_to_float(img, label)


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a lung mask as bool (lung = any channel > 127), resized to `shape` (H, W) if given.

    Both dataset conventions are accepted: RGB 0/255 (`masks/`) and grayscale 0/255 (`lung masks/`).
    """
    if sniff_format(path) not in ("png", "jpeg"):
        raise ImageReadError(f"{path}: a mask must be a PNG or JPEG image")
    img = _open_pil(path)
    with _converting(path):
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(img, dtype=np.float64)
            lung = arr > (arr.max(initial=0) / 2 if arr.max(initial=0) > 255 else 127)
        else:
            rgb = np.asarray(img.convert("RGB"))
            lung = (rgb > 127).any(axis=-1)
    if shape is not None and lung.shape != tuple(shape):
        lung = resize_mask(lung, shape)
    return lung


def resize_image(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float image in [0, 1] to (H, W) with area-aware bilinear filtering."""
    if arr.shape == tuple(size):
        return arr.astype(np.float32, copy=False)
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    out = img.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to (H, W); nearest-neighbour keeps it binary."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    out = img.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(out) > 127


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding (the cache's storage type)."""
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)

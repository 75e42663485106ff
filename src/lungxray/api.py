"""The three-line Python API: `model = lungxray.load(); result = model.predict(x); result.prediction`.

`predict` takes whatever a user has in hand and turns it into the same grayscale [0, 1] image the command line
reads from a file, so one picture gives the same probabilities whatever form it arrives in:

- a path (`str`, `Path` or any `os.PathLike`): PNG, JPEG or DICOM, read exactly as `lungxray predict` reads it
  (for a model trained on provided masks, a path also finds the mask beside it, `masks/NAME`, as `predict` does;
  a picture in memory has no file name, so the lung U-Net draws its mask: give the path when a provided mask
  matters. The shipped model uses the U-Net's masks for every input);
- `bytes` of such a file (e.g. an upload, a DICOM blob);
- a PIL image (any mode Pillow converts to grayscale; a float "F" image is read as a float array);
- a numpy array: 2-D grayscale or HxWx3 RGB; uint8, uint16 over the full 16-bit range (raw 10-12-bit detector
  values are refused: scale them, or give the DICOM file), or float in [0, 1];
- a torch tensor of the same shapes (or 1xHxW / 3xHxW);
- a list or tuple of any of these (a list of results comes back).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .data.io import PIL_READ_ERRORS, _pil_to_float, check_bit_depth
from .data.limits import check_dims
from .errors import ImageReadError
from .predict import PredictionResult, Predictor

__all__ = ["Model", "load", "segment", "to_grayscale"]


def _rgb_thumbnail(rgb: np.ndarray, size: int = 64) -> np.ndarray:
    """The small RGB copy the out-of-distribution colour check reads (as `ood.read_rgb_thumbnail` makes it)."""
    return np.asarray(Image.fromarray(rgb).convert("RGB").resize((size, size)), dtype=np.float32) / 255.0


def to_grayscale(x: Any, name: str = "<array>") -> tuple[np.ndarray, np.ndarray | None]:
    """Turn an in-memory picture into (2-D float32 image in [0, 1], RGB thumbnail or None).

    Colour and 8-bit pictures go through Pillow's own conversion, as files do, so a PNG's pixels given as
    a numpy array match the file to the last bit.

    Raises:
        ImageReadError: the object is not a picture this function understands (its message says what is accepted).
    """
    if isinstance(x, Image.Image):
        return _from_pil(x, name)
    try:
        import torch

        if isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            if t.ndim == 3 and t.shape[0] in (1, 3):
                t = t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)
            if t.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16; float32 holds both exactly
                t = t.float()
            x = t.numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(x, np.ndarray):
        raise ImageReadError(f"{name}: cannot read a {type(x).__name__}; give a path, file bytes, a PIL image, "
                             "a numpy array or a torch tensor")
    arr = x
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise ImageReadError(f"{name}: expected a 2-D grayscale or HxWx3 RGB array, got shape {arr.shape}")
    check_dims(name, arr.shape[1], arr.shape[0])  # the limit every file reader applies
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.uint16:
        if arr.ndim == 3:
            raise ImageReadError(f"{name}: 16-bit colour arrays are not supported; give grayscale")
        check_bit_depth(arr, name)
        return arr.astype(np.float32) / 65535.0, None
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ImageReadError(f"{name}: a float array must hold finite values in [0, 1] "
                                 f"(got {np.nanmin(arr):.3g} to {np.nanmax(arr):.3g}); scale it, or give uint8/uint16")
        if arr.ndim == 2:
            return arr.astype(np.float32), None
        u8 = np.round(arr * 255).astype(np.uint8)
    else:
        raise ImageReadError(f"{name}: unsupported array type {arr.dtype}; give uint8, uint16 or float in [0, 1]")
    img = Image.fromarray(np.ascontiguousarray(u8))
    return _pil_to_float(img, name), (_rgb_thumbnail(u8[:, :, :3]) if u8.ndim == 3 else None)


def _from_pil(img: Image.Image, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image, read as a file of the same pixels is read; a float ("F") image as a float array is."""
    check_dims(name, *img.size)  # the limit files and arrays get
    try:
        if img.mode == "F":  # no file format we read gives "F": take its values as they are, like a float array
            return to_grayscale(np.asarray(img, dtype=np.float32), name)
        from .ood import COLOUR_MODES

        rgb = _rgb_thumbnail(np.asarray(img.convert("RGB"))) if img.mode in COLOUR_MODES else None
        return _pil_to_float(img, name), rgb
    except PIL_READ_ERRORS as exc:  # a truncated or damaged lazy image, a mode Pillow cannot convert (LAB, La...)
        raise ImageReadError(f"{name}: cannot read this PIL image (mode {img.mode}): {type(exc).__name__}: {exc}") from None


def _as_path(x: Any) -> Any:
    """Any os.PathLike (os.DirEntry, py.path.local...) as a str path; everything else as it is."""
    return os.fspath(x) if isinstance(x, os.PathLike) and not isinstance(x, Path) else x


class Model:
    """A loaded classifier with a one-call `predict`. Make one with `lungxray.load()`."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.classes)

    def __repr__(self) -> str:
        d = self.predictor.describe()
        read = "" if d.get("read_size") == d.get("image_size") else f" read={d.get('read_size')}"
        return f"<lungxray.Model {d.get('name', '?')} classes={self.classes} input={d.get('image_size')}{read}>"

    def describe(self) -> dict:
        """The model's identity, as `predictions.json` and the server's /v1/model give it: name, version,
        checkpoint, data fingerprint, temperature, classes, input size and the size images are read at, masks."""
        return self.predictor.describe()

    def predict(self, x: Any, *, cam: bool = False) -> PredictionResult | list[PredictionResult]:
        """Classify one picture (or a list of them). See the module docstring for what `x` may be.

        Args:
            cam: also compute the Grad-CAM map (`result.cam`, drawn by `result.overlay(cam=True)`).
        Returns:
            One `PredictionResult` (`.prediction`, `.probability`, `.probabilities`, `.ood`, `.mask`,
            `.to_dict()`, `.overlay()`), or a list of them for a list input.
        """
        if isinstance(x, (list, tuple)):
            return [self._one(item, cam, f"<item {i}>") for i, item in enumerate(x)]
        return self._one(x, cam, "<array>")

    def _one(self, x: Any, cam: bool, name: str) -> PredictionResult:
        x = _as_path(x)
        if isinstance(x, (str, Path)):
            if os.path.isdir(x):  # (Path.is_dir raises on names too long for the OS; this says False)
                raise ImageReadError(f"{x}: is a folder; predict takes one file (or a list of files). For a folder, "
                                     f"pass sorted(Path({str(x)!r}).glob('*.png')) or run `lungxray predict {x}`")
            skipped: list[tuple[str, str]] = []
            results = list(self.predictor.predict_paths([x], cam=cam, skipped=skipped, warn=False))
            if not results:
                raise ImageReadError(skipped[0][1] if skipped else f"{x}: could not be read as an image")
            return results[0]
        if isinstance(x, (bytes, bytearray, memoryview)):
            from .serve.images import decode_upload

            label = "<bytes>" if name == "<array>" else name
            image, rgb = decode_upload(bytes(x), label)
            return self.predictor.predict_array(image, name=label, cam=cam, rgb=rgb)
        image, rgb = to_grayscale(x, name)
        return self.predictor.predict_array(image, name=name, cam=cam, rgb=rgb)


def load(model: str | Path | None = None, *, device: str = "cpu", runtime: str = "torch",
         onnx_path: str | Path | None = None) -> Model:
    """Load a classifier: the shipped default (None), a run folder or a `.safetensors` checkpoint.

    With `runtime="onnx"` ONNX Runtime computes the probabilities: from `onnx_path` (an export of this very
    checkpoint, `lungxray export`) or from an export made once and cached. The PyTorch weights are loaded either
    way: they check the export and give Grad-CAM (`predict(x, cam=True)`).
    """
    return Model(Predictor.load(model, device=device, runtime=runtime, onnx_path=onnx_path, cam="auto"))


@functools.lru_cache(maxsize=1)
def _shipped_segmenter():
    """The shipped lung U-Net, loaded on the first `segment` call and kept (a loop of calls loads it once)."""
    from .segment import Segmenter

    return Segmenter.load()


def segment(x: Any) -> np.ndarray | list[np.ndarray]:
    """Lung mask(s) from the shipped lung U-Net: a bool array of the input's size (or a list for a list)."""
    seg = _shipped_segmenter()
    items: Sequence[Any] = x if isinstance(x, (list, tuple)) else [x]
    images = []
    for i, item in enumerate(items):
        item = _as_path(item)
        if isinstance(item, (str, Path)):
            from .data.io import read_image

            images.append(read_image(item))
        elif isinstance(item, (bytes, bytearray, memoryview)):
            from .serve.images import decode_upload

            images.append(decode_upload(bytes(item), f"<item {i}>")[0])
        else:
            images.append(to_grayscale(item, f"<item {i}>")[0])
    masks = [np.asarray(m, dtype=bool) for m in seg.predict(images)]
    return masks if isinstance(x, (list, tuple)) else masks[0]

"""ONNX export of a trained classifier (probabilities out, temperature included), of the lung U-Net, and ONNX
Runtime sessions for both.

The classifier graph has three outputs: "probabilities" (softmax of logits / temperature, what every runtime
should show), "logits" and "features" (the penultimate activations the OOD guard measures), so a Predictor on
ONNX Runtime reports the same numbers and the same out-of-distribution flags as one on PyTorch.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint, resolve_checkpoint
from .errors import CheckpointError, ConfigError
from .ood import penultimate_features
from .utils import atomic_write_bytes, write_json

OPSET = 17
EXPORT_FORMAT = 2
"""Bumped whenever the exported graph changes, so cached exports of an older layout are rebuilt."""


class _Exported(torch.nn.Module):
    """Logits / T -> softmax inside the graph, plus logits and penultimate features."""

    def __init__(self, model: torch.nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x):
        features, logits = penultimate_features(self.model, x)
        return torch.softmax(logits / self.temperature, dim=1), logits, features


class _Sigmoid(torch.nn.Module):
    """Lung logits -> lung probabilities inside the graph."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.sigmoid(self.model(x))


def checkpoint_digest(run: str | Path, which: str = "best") -> str:
    """SHA-256 of a checkpoint's weights and metadata (the temperature lives in the JSON): names an export."""
    h = hashlib.sha256()
    for p in resolve_checkpoint(run, which):
        h.update(p.read_bytes())
    return h.hexdigest()


def _check_out(out: str | Path, overwrite: bool) -> Path:
    """Refuse an output that exists (without `overwrite`), and, even with it, a .json beside the .onnx that is not an
    earlier export's metadata: `RUN/best.onnx` would otherwise replace the checkpoint's own `best.json`."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"{out}: the output file must end in .onnx")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the .onnx file to write")
    meta = out.with_suffix(".json")  # the metadata beside it is an output too
    for target in (out, meta):
        if target.exists() and not overwrite:
            raise ConfigError(f"{target} exists; pass overwrite=True to replace it")
    if meta.exists() and not _is_export_metadata(meta):
        raise ConfigError(f"{meta} is not the metadata of an earlier ONNX export (a checkpoint's or another file), and "
                          f"writing {out.name} would replace it; choose another output name")
    return out


def _is_export_metadata(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()).get("onnx"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def _to_onnx(module: torch.nn.Module, dummy: torch.Tensor, outputs: list[str]) -> bytes:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks in forward() become constants in the trace; the batch axis stays dynamic regardless.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript exporter is chosen on purpose (dynamo=False): it handles every registered model.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        torch.onnx.export(module, (dummy,), buf, input_names=["image"], output_names=outputs,
                          dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                          opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def export_onnx(run: str | Path, out: str | Path, overwrite: bool = False, which: str = "best") -> Path:
    """Write `out` (.onnx, dynamic batch, input "image" (N, 1, H, W) in [0, 1]; outputs "probabilities",
    "logits", "features") and `out` with suffix .json holding the checkpoint metadata.

    Returns:
        the .onnx path.
    """
    out = _check_out(out, overwrite)
    model, meta = load_checkpoint(run, which)
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    wrapped = _Exported(model, meta.get("temperature", 1.0)).eval()
    h, w = meta["image_size"]
    data = _to_onnx(wrapped, torch.rand(2, 1, h, w), ["probabilities", "logits", "features"])
    # The parity check runs on a temporary copy, so a failed export leaves an earlier one where it was.
    with tempfile.TemporaryDirectory(prefix=".lungxray-export-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        trial = Path(tmp) / "model.onnx"
        trial.write_bytes(data)
        diff = onnx_parity(run, trial, which=which)
    if not diff <= ONNX_TOLERANCE:  # also NaN: a graph that computes something else is not written
        raise CheckpointError(f"{out}: the export disagrees with the PyTorch model: max |p_onnx - p_torch| = {diff:.2e} "
                              f"on 8 random images (tolerance {ONNX_TOLERANCE:.0e}); nothing was written. Check the "
                              "onnx and onnxruntime versions, and report it")
    out.with_suffix(".json").unlink(missing_ok=True)  # never a new graph beside an old export's metadata
    atomic_write_bytes(out, data)
    write_json(out.with_suffix(".json"), {**meta, "onnx": {
        "file": out.name, "opset": OPSET, "format": EXPORT_FORMAT, "input": "image",
        "outputs": ["probabilities", "logits", "features"], "softmax_included": True,
        "source_sha256": checkpoint_digest(run, which), "max_abs_diff_vs_torch": diff}})
    return out


def export_segmentation_onnx(weights: str | Path | None, out: str | Path, overwrite: bool = False) -> Path:
    """Write the lung U-Net as `out` (.onnx, dynamic batch, input "image" (N, 1, H, W) in [0, 1] at the
    model's input size, output "lung_probability" (N, 1, H, W)) and its metadata .json beside it.

    Args:
        weights: a `segment train` run folder or `.safetensors`; None for the shipped weights.
    Raises:
        CheckpointError: no usable segmentation weights (the message says where to get them).
    """
    from .segment import Segmenter

    out = _check_out(out, overwrite)
    seg = Segmenter.load(weights)  # the segmentation package's own loader and error messages
    model = seg.model.float().eval().to(memory_format=torch.contiguous_format)
    h, w = seg.input_size
    data = _to_onnx(_Sigmoid(model).eval(), torch.rand(2, 1, h, w), ["lung_probability"])
    out.with_suffix(".json").unlink(missing_ok=True)  # never a new graph beside an old export's metadata
    atomic_write_bytes(out, data)
    write_json(out.with_suffix(".json"), {**seg.meta, "onnx": {
        "file": out.name, "opset": OPSET, "format": EXPORT_FORMAT, "input": "image", "outputs": ["lung_probability"],
        "sigmoid_included": True, "postprocess": "threshold, keep largest components and fill holes as in "
                                                 "lungxray.segment.Segmenter (not in the graph)"}})
    return out


def segmentation_path(out: str | Path) -> Path:
    """Where `export_all` puts the lung U-Net next to the classifier: `model.onnx` -> `model-lungs.onnx`."""
    out = Path(out)
    return out.with_name(f"{out.stem}-lungs.onnx")


def export_all(run: str | Path, out: str | Path, segmentation: bool = False,
               segmentation_weights: str | Path | None = None, overwrite: bool = False, which: str = "best") -> list[Path]:
    """Export the classifier to `out` and, with `segmentation`, the lung U-Net to `segmentation_path(out)`.

    Everything is checked before anything is written, so a missing segmentation model leaves no half export.

    Returns:
        the written .onnx paths (each has its .json beside it).
    """
    if segmentation_weights is not None and not segmentation:
        raise ConfigError("segmentation_weights= is only used with segmentation=True: add it to export the lung U-Net "
                          "too, or leave the weights out")
    targets = [_check_out(out, overwrite)]
    resolve_checkpoint(run, which)
    if segmentation:
        from .segment import Segmenter

        targets.append(_check_out(segmentation_path(out), overwrite))
        try:
            Segmenter.load(segmentation_weights)
        except CheckpointError as exc:
            raise CheckpointError(
                f"segmentation=True: no lung segmentation model to export ({exc}). Pass segmentation_weights= with a "
                "`lungxray segment train` run folder or .safetensors, or leave segmentation= out") from None
    written = [export_onnx(run, out, overwrite=overwrite, which=which)]
    if segmentation:
        written.append(export_segmentation_onnx(segmentation_weights, targets[1], overwrite=overwrite))
    return written


ONNX_TOLERANCE = 1e-4
"""Largest |p_onnx - p_torch| `lungxray export` accepts (fp32 graphs agree to ~1e-6)."""


def onnx_parity(run: str | Path, onnx_path: str | Path, images: np.ndarray | None = None, which: str = "best") -> float:
    """Max |p_onnx - p_torch| over `images` ((N, 1, H, W) in [0, 1]; default 8 seeded random images)."""
    from .metrics import softmax

    model, meta = load_checkpoint(run, which)
    if images is None:
        images = np.random.default_rng(0).random((8, 1, *meta["image_size"]), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).numpy()
    p_torch = softmax(logits, float(meta.get("temperature", 1.0)))
    return float(np.abs(OnnxClassifier(onnx_path).probabilities(images) - p_torch).max())


def cached_onnx(run: str | Path, cache_dir: str | Path | None = None, which: str = "best") -> Path:
    """The ONNX export of a checkpoint, made once and kept in `<cache>/onnx/<digest>.onnx` (reused while the
    checkpoint's weights and metadata are unchanged)."""
    from .data.cache import default_cache_dir

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    path = folder / f"{checkpoint_digest(run, which)[:24]}-v{EXPORT_FORMAT}.onnx"
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        export_onnx(run, path, overwrite=True, which=which)
    return path


class OnnxClassifier:
    """ONNX Runtime session with the same call shape as the torch model's probabilities.

    Sessions are thread-safe: one instance can serve concurrent requests.
    """

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found (create it with `lungxray export RUN --onnx {path}`)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable ONNX model ({str(exc)[:200]})") from None
        self.path = path
        meta_path = path.with_suffix(".json")
        self.meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, 1, H, W) float32 in [0, 1] -> (N, C) probabilities (temperature applied)."""
        return self.session.run(["probabilities"], {"image": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name ("probabilities", and "logits" and "features" in current exports)."""
        values = self.session.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.outputs, values))

"""ONNX export of a trained classifier (probabilities out, temperature included) and an ONNX Runtime session."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .errors import CheckpointError, ConfigError
from .utils import atomic_write_bytes, write_json

OPSET = 17


class _WithSoftmax(torch.nn.Module):
    """Logits / T -> softmax inside the graph, so every runtime returns calibrated probabilities."""

    def __init__(self, model: torch.nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x):
        return torch.softmax(self.model(x) / self.temperature, dim=1)


def export_onnx(run: str | Path, out: str | Path, overwrite: bool = False, which: str = "best") -> Path:
    """Write `out` (.onnx, dynamic batch, input "image" (N, 1, H, W) in [0, 1], output "probabilities")
    and `out` with suffix .json holding the checkpoint metadata."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"{out}: the output file must end in .onnx")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    model, meta = load_checkpoint(run, which)
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    wrapped = _WithSoftmax(model, meta.get("temperature", 1.0)).eval()
    h, w = meta["image_size"]
    dummy = torch.rand(2, 1, h, w)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(wrapped, (dummy,), buf, input_names=["image"], output_names=["probabilities"],
                          dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    atomic_write_bytes(out, buf.getvalue())
    write_json(out.with_suffix(".json"), {**meta, "onnx": {"file": out.name, "opset": OPSET, "input": "image",
                                                          "output": "probabilities", "softmax_included": True}})
    return out


class OnnxClassifier:
    """ONNX Runtime session with the same call shape as the torch model's probabilities."""

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
        meta_path = path.with_suffix(".json")
        self.meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, 1, H, W) float32 in [0, 1] -> (N, C) probabilities (temperature applied)."""
        return self.session.run(["probabilities"], {"image": np.ascontiguousarray(x, dtype=np.float32)})[0]

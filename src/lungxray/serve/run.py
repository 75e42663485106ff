"""Load the model once and serve it with uvicorn (what `lungxray serve` calls)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..predict import Predictor
from .app import create_app

log = logging.getLogger(__name__)


def load_for_serving(model: str | Path | None = None, runtime: str = "torch", onnx_path: str | Path | None = None,
                     device: str = "cpu") -> Predictor:
    """The server's predictor: Grad-CAM enabled when the model has a layer for it (used only when a request asks)."""
    try:
        return Predictor.load(model, runtime=runtime, onnx_path=onnx_path, device=device, cam=True)
    except ConfigError as exc:
        if "Grad-CAM" not in str(exc):
            raise
        log.info("serving without Grad-CAM: %s", exc)
        return Predictor.load(model, runtime=runtime, onnx_path=onnx_path, device=device)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(model: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, runtime: str = "torch",
          onnx_path: str | Path | None = None, max_upload_mb: float = 20, device: str = "cpu",
          echo: Callable[[str], None] = print) -> None:
    """Load the model, then serve the API and page until interrupted. Binds to loopback unless told otherwise."""
    import uvicorn

    pred = load_for_serving(model, runtime, onnx_path, device)
    app = create_app(pred, max_upload_mb=max_upload_mb)
    shown = f"[{host}]" if ":" in host else host
    echo(f"serving {pred.model.name} {pred.meta.get('version') or ''} ({pred.runtime} runtime) on http://{shown}:{port}/ "
         f"(API docs at /docs); research use only, not a medical device")
    if not is_loopback(host):
        echo(f"warning: listening on {host}: anyone who can reach this machine can use the API; there is no "
             "authentication and no TLS")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)

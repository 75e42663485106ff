"""Load the model once and serve it with uvicorn (what `lungxray serve` calls)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Callable

from ..predict import Predictor
from .app import create_app

log = logging.getLogger(__name__)
HEADER_TIMEOUT_SECONDS = 10.0


def header_timeout_protocol(seconds: float = HEADER_TIMEOUT_SECONDS) -> type:
    """uvicorn's h11 protocol with a deadline on request headers (uvicorn has none: a client that never finishes
    its headers keeps the connection forever). The deadline runs from the connection's start and from the end of
    each response; a connection still waiting for complete headers when it passes gets 408 and is closed."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    body = b'{"detail":"request headers not received in time; connection closed"}'
    answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
              b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer = None

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._headers_overdue)

        def _headers_overdue(self) -> None:
            self._header_timer = None
            # IDLE: no complete request line and headers since the deadline was set (h11 leaves IDLE on them).
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def load_for_serving(model: str | Path | None = None, runtime: str = "torch", onnx_path: str | Path | None = None,
                     device: str = "cpu") -> Predictor:
    """The server's predictor: Grad-CAM enabled when the model has a layer for it (used only when a request asks)."""
    return Predictor.load(model, runtime=runtime, onnx_path=onnx_path, device=device, cam="auto")


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
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http=header_timeout_protocol())

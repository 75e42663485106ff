"""The REST API and the web page: a FastAPI app around one loaded `Predictor`.

Every request goes through `Predictor.predict_array`, the pipeline `lungxray predict` uses. Uploads are
judged by their bytes (never by file name or content type): not an image -> 415, an image that does not
decode -> 422, too large -> 413; the body is counted as it arrives, so no more than the limit is ever held.
Classification runs in worker threads; the Predictor serialises what is not thread-safe (its hooked torch
forward pass and Grad-CAM), and ONNX Runtime sessions run concurrently.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..errors import CheckpointError, ConfigError, LungxrayError
from ..predict import INTENDED_USE, MODEL_CARD, NOTICE, PredictionResult, Predictor
from .images import FORMATS, UnsupportedMedia, b64, decode_upload, render_png

log = logging.getLogger(__name__)

MAX_BATCH_FILES = 16
MAX_PIXELS = 4096 * 4096
"""Largest image a request may hold (16.8 M pixels, a 4k radiograph): a 65 KB PNG can declare 8192x8192, whose
decoding alone costs over a gigabyte; the header is read before any pixel is decoded."""
MAX_CONCURRENT = 2
"""Classifications running at once; more requests wait for a slot (memory stays bounded under load)."""
QUEUE_SECONDS = 20.0
"""How long a request waits for a slot before it gets 503 with Retry-After."""
BODY_TIMEOUT_SECONDS = 30.0
"""A request body that stops arriving for this long is answered with 408 and its connection closed."""
_FORM_OVERHEAD = 64 * 1024
"""Room for multipart boundaries and form fields on top of the file-size limit."""
_CHUNK = 1 << 20


class BodyLimit:
    """ASGI middleware: request bodies over `max_bytes` get a 413 JSON answer.

    A declared Content-Length over the limit is refused before a byte is read; otherwise the bytes are
    counted as they arrive (chunked uploads declare no length), and the request is cut off the moment the
    count passes the limit. The application then sees a disconnected client and its own answer is dropped.
    """

    def __init__(self, app, max_bytes: int, detail: str, body_timeout: float = BODY_TIMEOUT_SECONDS):
        self.app = app
        self.max_bytes = int(max_bytes)
        self.detail = detail
        self.body_timeout = float(body_timeout)

    async def _refuse(self, send, status: int = 413, detail: str | None = None) -> None:
        body = json.dumps({"detail": detail or self.detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            try:
                # A client that stops sending half-way would otherwise hold a connection and a worker forever.
                message = await asyncio.wait_for(receive(), timeout=self.body_timeout)
            except asyncio.TimeoutError:
                refused = True
                await self._refuse(send, 408, f"request body stalled for {self.body_timeout:g} s; send it again")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def _status_of(exc: LungxrayError) -> int:
    if isinstance(exc, UnsupportedMedia):
        return 415
    if isinstance(exc, CheckpointError):
        return 503  # the server lacks something (e.g. the lung segmenter a masked model needs), not the client
    return 422  # ImageReadError (corrupt, truncated, too many pixels), ConfigError


def _model_label(pred: Predictor) -> dict:
    return {"name": pred.model.name, "version": pred.meta.get("version"), "runtime": pred.runtime}


def model_card(pred: Predictor, max_upload_mb: float) -> dict:
    """What `GET /v1/model` returns: identity, classes, input, masking, metrics, calibration, intended use."""
    desc = {k: v for k, v in pred.describe().items() if k not in ("checkpoint", "onnx")}  # no server paths
    return {
        **desc,
        "notice": NOTICE,
        "intended_use": INTENDED_USE,
        "model_card": MODEL_CARD,
        "masking": {"trained_on": pred.trained_masks, "default": pred.masks,
                    "per_request": ["auto", "none"] if pred.masked else ["auto"]},
        "calibration": pred.meta.get("calibration"),
        "data": {k: v for k, v in (pred.meta.get("data") or {}).items() if k != "split_file"},
        "cam_available": pred.cam_enabled,
        "ood_guard": pred.guard is not None,
        "accepted_formats": FORMATS,
        "max_upload_mb": max_upload_mb,
        "max_batch_files": MAX_BATCH_FILES,
        "lungxray_version": __version__,
    }


def _response(pred: Predictor, res: PredictionResult, cam: bool, overlay: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prediction": res.prediction,
        "probability": res.probability,
        "probabilities": res.probabilities,
        "model": _model_label(pred),
        "ood": res.ood,
        "mask": res.mask_source,
        "notice": NOTICE,
    }
    if cam:
        out["cam_png"] = b64(render_png(res.image, res.mask, res.cam))
    if overlay:
        out["overlay_png"] = b64(render_png(res.image, res.mask))
    return out


def check_pixels(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse (413) a PNG/JPEG/DICOM whose header declares more than `max_pixels`, before decoding a pixel."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:  # Pillow refuses it before we can read the size: far over any limit
        raise HTTPException(413, f"{name}: image declares more pixels than this server's limit of {max_pixels:,}; "
                                 "send a downscaled image") from None
    except Exception:  # not a PIL image: perhaps DICOM, whose header gives the size without the pixels
        size = _dicom_size(data)
        if size is None:  # a broken header: the decoder reports it properly
            return
        w, h = size
    if w * h > max_pixels:
        raise HTTPException(413, f"{name}: image is {w}x{h} pixels, more than this server's limit of {max_pixels:,}; "
                                 "send a downscaled image")


def _dicom_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a DICOM header, reading no pixel data; None when it is not one."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        return int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
    except Exception:  # noqa: BLE001 - any parser failure: not a DICOM this check can read
        return None


DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:")
"""/docs and /redoc load nothing from another host (their inline start-up scripts and styles are allowed)."""


class _Revalidated(StaticFiles):
    """The web page's script and style, revalidated on every visit (`Cache-Control: no-cache`)."""

    async def get_response(self, path: str, scope):
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def _offline_docs(app: FastAPI) -> None:
    """/docs and /redoc with Swagger UI and ReDoc served by this server (assets from the fastapi-offline package),
    so the API documentation works on a machine with no internet access."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    assets = resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API",
                                   swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs-assets/favicon.png")
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API",
                              redoc_js_url=f"{root}/docs-assets/redoc.standalone.js",
                              redoc_favicon_url=f"{root}/docs-assets/favicon.png", with_google_fonts=False)
        # ReDoc's bundle links a logo on its maker's CDN: the policy keeps every request on this server.
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page


def create_app(predictor: Predictor, max_upload_mb: float = 20, max_concurrent: int = MAX_CONCURRENT,
               queue_seconds: float = QUEUE_SECONDS, body_timeout: float = BODY_TIMEOUT_SECONDS) -> FastAPI:
    """The API and web page around a loaded predictor (load it once, with `cam=True` to offer Grad-CAM).

    Args:
        predictor: from `Predictor.load(...)`; shared by all requests.
        max_upload_mb: largest accepted request body (a batch's files together), in MiB.
        max_concurrent: classifications at once; further requests wait up to `queue_seconds`, then get 503.
        body_timeout: seconds a request body may stall before the request is answered with 408.
    """
    if max_upload_mb <= 0:
        raise ConfigError(f"max_upload_mb={max_upload_mb}: must be positive")
    pred = predictor
    limit = int(max_upload_mb * 1024 * 1024)
    too_large = (f"upload too large: the limit is {max_upload_mb:g} MB per request (the server's --max-upload-mb); "
                 "send a smaller or downscaled image")
    if pred.masked and pred.masks != "none":
        try:  # load the lung segmenter now rather than on the first request
            pred.segmenter()
        except CheckpointError as exc:
            log.warning("%s", exc)

    app = FastAPI(
        docs_url=None,  # served below from packaged assets: the defaults load Swagger UI and ReDoc from a CDN
        redoc_url=None,
        title="lungxray",
        version=__version__,
        description=("COVID-19 / Normal / Viral Pneumonia chest X-ray classification. "
                     f"**{NOTICE}.** {INTENDED_USE}"),
    )
    app.add_middleware(BodyLimit, max_bytes=limit + _FORM_OVERHEAD, detail=too_large, body_timeout=body_timeout)
    slots = asyncio.Semaphore(max(1, int(max_concurrent)))
    static = resources.files("lungxray") / "serve" / "static"
    app.mount("/static", _Revalidated(directory=str(static)), name="static")
    _offline_docs(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'request'}: {e.get('msg')}"
                 for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(LungxrayError)
    async def _user_error(request: Request, exc: LungxrayError):
        return JSONResponse({"detail": str(exc)}, status_code=_status_of(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Our bug, not the client's: JSON with an id to quote, the traceback in the server log under that id.
        request_id = uuid.uuid4().hex[:12]
        log.error("request %s %s failed (request id %s)", request.method, request.url.path, request_id, exc_info=exc)
        return JSONResponse({"detail": f"internal error; the server log has the details under request id {request_id}",
                             "request_id": request_id}, status_code=500)

    async def classify_bounded(*args) -> dict:
        try:
            await asyncio.wait_for(slots.acquire(), timeout=queue_seconds)
        except asyncio.TimeoutError:
            raise HTTPException(503, f"server busy: {max_concurrent} classifications running and others waiting; "
                                     "try again shortly", headers={"Retry-After": "5"}) from None
        try:
            return await run_in_threadpool(classify, *args)
        finally:
            slots.release()

    async def read_limited(upload: UploadFile) -> bytes:
        chunks, n = [], 0
        while chunk := await upload.read(_CHUNK):
            n += len(chunk)
            if n > limit:
                raise HTTPException(413, too_large)
            chunks.append(chunk)
        return b"".join(chunks)

    def classify(data: bytes, name: str, cam: bool, masks: str, overlay: bool) -> dict:
        check_pixels(data, name)
        image, rgb = decode_upload(data, name)
        res = pred.predict_array(image, name=name, masks=masks, cam=cam, rgb=rgb)
        return _response(pred, res, cam, overlay)

    def options(cam_q, cam_f, masks_q, masks_f, overlay_q, overlay_f) -> tuple[bool, str, bool]:
        """The request's options, each from the query string or else a form field."""
        cam = bool(cam_q if cam_q is not None else cam_f)
        masks = masks_q or masks_f or "auto"
        overlay = bool(overlay_q if overlay_q is not None else overlay_f)
        if cam and not pred.cam_enabled:
            raise HTTPException(422, f"Grad-CAM is not available for model {pred.model.name!r} on this server; "
                                     "ask again without cam=true")
        return cam, masks, overlay

    @app.get("/", include_in_schema=False)
    async def page():
        # Revalidated on every visit, as are its script and style (the /static mount): after an upgrade no browser runs an old
        # app.js against a new page.
        return FileResponse(str(static / "index.html"), media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/health", summary="Liveness and the loaded model")
    async def health():
        return {"status": "ok", "model": pred.model.name, "version": pred.meta.get("version"), "runtime": pred.runtime}

    @app.get("/v1/model", summary="The model's card: classes, input, masking, metrics, intended use")
    async def model():
        return model_card(pred, max_upload_mb)

    @app.post(
        "/v1/predict",
        summary=f"Classify one X-ray ({FORMATS})",
        responses={413: {"description": "Upload too large"}, 415: {"description": f"Not a {FORMATS} file"},
                   422: {"description": "Corrupt image or invalid options"}},
    )
    async def predict(
        file: UploadFile = File(..., description=f"The X-ray: {FORMATS}; the format is read from the content"),
        cam_q: bool | None = Query(None, alias="cam", description="Also return cam_png: the Grad-CAM heatmap over the X-ray"),
        masks_q: Literal["auto", "none"] | None = Query(None, alias="masks",
                                                         description="auto: mask the lungs if the model was trained so; none: never"),
        overlay_q: bool | None = Query(None, alias="overlay",
                                       description="Also return overlay_png: the X-ray with the lung outline, if a mask was used"),
        cam_f: bool | None = Form(None, alias="cam", include_in_schema=False),
        masks_f: Literal["auto", "none"] | None = Form(None, alias="masks", include_in_schema=False),
        overlay_f: bool | None = Form(None, alias="overlay", include_in_schema=False),
    ):
        cam, masks, overlay = options(cam_q, cam_f, masks_q, masks_f, overlay_q, overlay_f)
        data = await read_limited(file)
        return await classify_bounded(data, file.filename or "upload", cam, masks, overlay)

    @app.post(
        "/v1/predict/batch",
        summary="Classify several X-rays; each result or error is reported in input order",
        responses={413: {"description": "Request too large"}},
    )
    async def predict_batch(
        files: list[UploadFile] = File(..., description=f"Up to {MAX_BATCH_FILES} files ({FORMATS})"),
        cam_q: bool | None = Query(None, alias="cam"),
        masks_q: Literal["auto", "none"] | None = Query(None, alias="masks"),
        overlay_q: bool | None = Query(None, alias="overlay"),
        cam_f: bool | None = Form(None, alias="cam", include_in_schema=False),
        masks_f: Literal["auto", "none"] | None = Form(None, alias="masks", include_in_schema=False),
        overlay_f: bool | None = Form(None, alias="overlay", include_in_schema=False),
    ):
        if len(files) > MAX_BATCH_FILES:
            raise HTTPException(422, f"too many files: {len(files)} (at most {MAX_BATCH_FILES} per request)")
        cam, masks, overlay = options(cam_q, cam_f, masks_q, masks_f, overlay_q, overlay_f)
        results = []
        for upload in files:
            name = upload.filename or "upload"
            data = await read_limited(upload)
            try:
                results.append({"file": name, **await classify_bounded(data, name, cam, masks, overlay)})
            except LungxrayError as exc:
                results.append({"file": name, "error": {"status": _status_of(exc), "detail": str(exc)}})
            except HTTPException as exc:
                if exc.status_code == 503:
                    raise
                results.append({"file": name, "error": {"status": exc.status_code, "detail": exc.detail}})
        n_failed = sum("error" in r for r in results)
        return {"results": results, "n_ok": len(results) - n_failed, "n_failed": n_failed,
                "model": _model_label(pred), "notice": NOTICE}

    return app

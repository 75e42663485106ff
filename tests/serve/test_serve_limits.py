"""Server limits from the red-team findings (issue 16, items 1 and 9): pixels, concurrency, stalled bodies, 500s."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from lungxray.serve import create_app
from lungxray.serve.app import BodyLimit
from lungxray.serve.run import load_for_serving

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

PNG = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample" / "COVID" / "images" / "COVID-9.png"


@pytest.fixture()
def pred(tiny_run):
    return load_for_serving(tiny_run)


def _post(client, body: bytes):
    return client.post("/v1/predict", files={"file": ("x.png", body, "image/png")})


def test_a_tiny_png_declaring_8192_squared_pixels_is_refused_before_decoding(pred) -> None:
    buf = io.BytesIO()
    Image.new("L", (8192, 8192)).save(buf, "PNG")
    assert len(buf.getvalue()) < 200_000  # small on the wire, a gigabyte once decoded
    with TestClient(create_app(pred)) as client:
        res = _post(client, buf.getvalue())
    assert res.status_code == 413 and "8192x8192" in res.json()["detail"]


def test_unexpected_errors_are_json_500_with_a_request_id(pred, monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pred, "predict_array", broken)
    with TestClient(create_app(pred), raise_server_exceptions=False) as client:
        res = _post(client, PNG.read_bytes())
    assert res.status_code == 500 and res.headers["content-type"].startswith("application/json")
    rid = res.json()["request_id"]
    assert rid in res.json()["detail"] and "boom" not in res.text  # no internals leak to the client
    assert rid in caplog.text and "boom" in caplog.text  # the log has them


def test_concurrent_work_is_bounded_and_the_excess_gets_503_with_retry_after(pred, monkeypatch) -> None:
    original = pred.predict_array
    running, peak, lock = [0], [0], threading.Lock()

    def slow(*args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.5)
        with lock:
            running[0] -= 1
        return original(*args, **kwargs)

    monkeypatch.setattr(pred, "predict_array", slow)
    with TestClient(create_app(pred, max_concurrent=1, queue_seconds=0.1)) as client:
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: _post(client, PNG.read_bytes()), range(3)))
    codes = sorted(a.status_code for a in answers)
    assert peak[0] == 1
    assert codes[0] == 200 and 503 in codes
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers.get("retry-after") == "5" and "busy" in busy.json()["detail"]


def test_a_stalled_request_body_gets_408() -> None:
    sent: list[dict] = []

    async def app(scope, receive, send):
        await receive()  # the application waits for the body, which never comes

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    middleware = BodyLimit(app, max_bytes=1000, detail="too large", body_timeout=0.05)
    scope = {"type": "http", "method": "POST", "headers": []}
    asyncio.run(asyncio.wait_for(middleware(scope, receive, send), timeout=5))
    assert sent[0]["status"] == 408
    assert "stalled" in json.loads(sent[1]["body"])["detail"]

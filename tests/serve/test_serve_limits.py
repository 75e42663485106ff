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


def test_a_header_past_pillows_own_bomb_limit_gets_the_servers_413_too(pred) -> None:
    """Pillow refuses a 20000x20000 header itself, before the size can be read: still this server's 413."""
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", 20000, 20000)
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])))
    res = _post(TestClient(create_app(pred)), bytes(data))
    assert res.status_code == 413 and "limit" in res.json()["detail"]


def test_a_dicom_over_the_pixel_limit_is_refused_like_a_png(pred, dicom_bytes) -> None:
    # 4200x4200 is within what the file reader accepts (8192^2) but over this server's limit (4096^2).
    import numpy as np

    with TestClient(create_app(pred)) as client:
        big = dicom_bytes(np.zeros((4, 4), np.uint16), Rows=4200, Columns=4200)  # the header is what counts
        res = client.post("/v1/predict", files={"file": ("big.dcm", big, "application/dicom")})
        assert res.status_code == 413 and "4200x4200" in res.json()["detail"]
        ok = dicom_bytes(np.full((64, 64), 1000, np.uint16))
        assert client.post("/v1/predict", files={"file": ("ok.dcm", ok, "application/dicom")}).status_code == 200


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


@pytest.fixture()
def slow_header_server():
    """A real uvicorn server (h11 with lungxray's header deadline of 0.5 s) around a two-route app."""
    import socket

    import uvicorn
    from fastapi import FastAPI

    from lungxray.serve.run import header_timeout_protocol

    app = FastAPI()

    @app.get("/ping")
    async def ping():
        return {"ok": True}

    @app.get("/slow")
    async def slow():
        await asyncio.sleep(1.2)  # handling may outlast the header deadline
        return {"ok": "slow"}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", http=header_timeout_protocol(0.5), timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(5)


def _read_all(conn, limit: float = 4.0) -> bytes:
    conn.settimeout(limit)
    data = b""
    try:
        while chunk := conn.recv(4096):
            data += chunk
    except TimeoutError:
        pass
    return data


def _read_response(conn) -> bytes:
    conn.settimeout(4)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_connection_that_never_finishes_its_headers_gets_408_and_is_closed(slow_header_server) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", slow_header_server)) as idle, \
            socket.create_connection(("127.0.0.1", slow_header_server)) as partial:
        partial.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")  # no blank line: the headers never end
        t0 = time.monotonic()
        for conn in (idle, partial):
            answer = _read_all(conn)
            assert answer.startswith(b"HTTP/1.1 408") and b"not received in time" in answer
        assert time.monotonic() - t0 < 3.5  # closed by the deadline, not by the read timeout


def test_the_header_deadline_spares_requests_in_progress_and_kept_alive_connections(slow_header_server) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", slow_header_server)) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")  # handled for 1.2 s, past the 0.5 s deadline
        first = _read_response(conn)
        assert first.startswith(b"HTTP/1.1 200") and b'"slow"' in first
        time.sleep(0.3)  # kept alive, then a second request within the new deadline
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        second = _read_response(conn)
        assert second.startswith(b"HTTP/1.1 200") and b'"ok":true' in second


def test_raw_12_bit_data_in_a_16_bit_png_is_a_422_with_advice(pred) -> None:
    import numpy as np

    gray = np.asarray(Image.open(PNG).convert("L"), dtype=np.uint16) * 16  # 0-4080: a detector's 12-bit values
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")
    with TestClient(create_app(pred)) as client:
        res = _post(client, buf.getvalue())
    assert res.status_code == 422 and "12 bits or fewer" in res.json()["detail"]

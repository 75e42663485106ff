"""Load test of `lungxray serve`: a server this script starts and stops, N concurrent clients, a fixed number of requests.

    python benchmarks/load.py                          # shipped model, torch then onnx, 8 clients, 200 requests
    python benchmarks/load.py --model runs/cnn --runtime onnx --clients 16 --requests 500
    python benchmarks/load.py --runtime torch --clients 16 --big-uploads   # also: memory for 8192^2 uploads
    python benchmarks/load.py --runtime torch --half-open 250   # also: connections that never finish their headers

Each runtime gets its own server (`python -m lungxray serve` on 127.0.0.1 and a free port). Clients post the
bundled sample PNGs (single-image POST /v1/predict, round robin) over keep-alive connections. Prints p50 / p95 /
p99 / max latency, throughput and the error count (any answer but 200, or a failed connection), with the
machine's load average, since other work on the machine shows up in every figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "radiography-sample"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def start_server(model: str | None, runtime: str, port: int, timeout: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lungxray", "serve", "--host", "127.0.0.1", "--port", str(port), "--runtime", runtime]
    if model:
        cmd += ["--model", model]
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: an unread pipe could fill and stall the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not answer /health within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post(conn: http.client.HTTPConnection, body: tuple[bytes, str]) -> tuple[int, bytes]:
    """POST one multipart body to /v1/predict on `conn`; (status, payload)."""
    conn.request("POST", "/v1/predict", body=body[0], headers={"Content-Type": body[1]})
    resp = conn.getresponse()
    return resp.status, resp.read()


def run_load(port: int, bodies: list[tuple[bytes, str]], clients: int, requests: int) -> dict:
    """`requests` POSTs shared by `clients` threads; returns latencies (s), errors and wall time."""
    lock = threading.Lock()
    counter = iter(range(requests))
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                status, payload = post(conn, bodies[i % len(bodies)])
                ok = status == 200 and "prediction" in json.loads(payload)
                err = None if ok else f"HTTP {status}: {payload[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                err = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if err:
                    errors.append(err)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - t0}


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def big_uploads(port: int, pid: int) -> None:
    """Peak server memory above idle for one and for four concurrent 8192x8192 PNG uploads (65 KB each)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8192, 8192)).save(buf, "PNG")
    body = multipart("big.png", buf.getvalue())
    idle, _ = memory_mb(pid)
    for n in (1, 4):
        statuses: list[int] = []

        def one() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            statuses.append(post(conn, body)[0])
            conn.close()

        threads = [threading.Thread(target=one) for _ in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        _, peak = memory_mb(pid)
        print(f"  {n} concurrent 8192x8192 upload(s) ({len(buf.getvalue()) // 1024} KB each): HTTP {sorted(statuses)} "
              f"in {wall:.2f} s; server peak RSS {peak:.0f} MiB, {max(0.0, peak - idle):.0f} MiB above idle ({idle:.0f})")


def half_open(port: int, n: int, wait: float) -> None:
    """Open `n` connections that send half a request line and headers, then count how many the server has closed
    after `wait` seconds (the server's header deadline is 10 s)."""
    import selectors

    conns = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        c.setblocking(False)
        conns.append(c)
    t0 = time.perf_counter()
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c, selectors.EVENT_READ)
    closed, answers = set(), set()
    while len(closed) < n and time.perf_counter() - t0 < wait:
        for key, _ in sel.select(timeout=0.5):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 "):
                answers.add(data[9:12].decode())
            if not data:
                closed.add(key.fileobj)
                sel.unregister(key.fileobj)
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    print(f"  {n} connections that never finish their headers: {len(closed)} closed by the server within "
          f"{elapsed:.1f} s (HTTP {', '.join(sorted(answers)) or 'none'} sent), {n - len(closed)} still open")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="run folder or .safetensors (default: the shipped model)")
    ap.add_argument("--runtime", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10, help="requests sent first and not counted")
    ap.add_argument("--startup-timeout", type=float, default=180)
    ap.add_argument("--big-uploads", action="store_true",
                    help="also measure server memory for one and four concurrent 8192x8192 PNG uploads")
    ap.add_argument("--half-open", type=int, default=0, metavar="N",
                    help="also open N connections that never finish their headers and count those the server closes")
    args = ap.parse_args()

    images = sorted(SAMPLE.glob("*/images/*.png"))
    if not images:
        raise SystemExit(f"no sample images under {SAMPLE}")
    bodies = [multipart(p.name, p.read_bytes()) for p in images]
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} "
          f"(1 / 5 min) at start; {len(images)} sample images, single-image POST /v1/predict")
    for runtime in args.runtime:
        port = free_port()
        proc = start_server(args.model, runtime, port, args.startup_timeout)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/health")
            health = json.loads(conn.getresponse().read())
            run_load(port, bodies, 1, args.warmup)
            if args.big_uploads:
                print(f"runtime {runtime}: memory (peak RSS counts since the server started, warm-up included)")
                big_uploads(port, proc.pid)
            if args.half_open:
                print(f"runtime {runtime}: slow clients")
                half_open(port, args.half_open, wait=30.0)
            res = run_load(port, bodies, args.clients, args.requests)
        finally:
            stop_server(proc)
        lat = np.array(res["latencies"]) * 1e3
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        print(f"runtime {runtime}: model {health['model']} {health.get('version') or ''}, {args.clients} clients, "
              f"{len(lat)} requests in {res['wall']:.2f} s")
        print(f"  latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {lat.max():.1f}")
        print(f"  throughput {len(lat) / res['wall']:.1f} req/s   errors {len(res['errors'])}   "
              f"load average now {os.getloadavg()[0]:.2f}")
        for e in res["errors"][:5]:
            print(f"  error: {e}")


if __name__ == "__main__":
    main()

"""The REST API through FastAPI's TestClient: answers, limits, error codes and concurrency."""

from __future__ import annotations

import base64
import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lungxray.predict import NOTICE, Predictor
from lungxray.serve import create_app
from lungxray.serve.run import load_for_serving

with warnings.catch_warnings():  # newer Starlette nudges towards httpx2; httpx still works and is what we pin
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
PNG = SAMPLE / "COVID" / "images" / "COVID-9.png"
OTHER = SAMPLE / "Normal" / "images" / "Normal-7.png"
CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


@pytest.fixture(scope="module")
def pred(tiny_run) -> Predictor:
    return load_for_serving(tiny_run)


@pytest.fixture(scope="module")
def client(pred) -> TestClient:
    with TestClient(create_app(pred, max_upload_mb=1)) as c:
        yield c


def _post(client, path: Path | None = None, data: bytes | None = None, name: str = "x.png", url: str = "/v1/predict", **kw):
    body = data if data is not None else path.read_bytes()
    return client.post(url, files={"file": (name, body, "image/png")}, **kw)


def _png(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    assert img.format == "PNG"
    return img


# ----------------------------------------------------------------------------------------- answers
def test_health_and_model_card(client, tiny_run):
    assert client.get("/health").json() == {"status": "ok", "model": "cnn", "version": "0.1.0", "runtime": "torch"}
    card = client.get("/v1/model").json()
    assert card["classes"] == CLASSES and card["image_size"] == [32, 32] and card["trained_masks"] == "none"
    assert card["notice"] == NOTICE and "Not a medical device" in card["intended_use"]
    assert card["cam_available"] and card["ood_guard"] and card["max_upload_mb"] == 1
    assert "checkpoint" not in card and str(tiny_run) not in str(card)  # no server paths leak out


def test_predict_png_matches_the_pipeline(client, pred):
    r = _post(client, PNG)
    assert r.status_code == 200, r.text
    body = r.json()
    ref = next(pred.predict_paths([PNG]))
    assert body["prediction"] == ref.prediction and list(body["probabilities"]) == CLASSES
    assert body["probability"] == pytest.approx(max(body["probabilities"].values()))
    np.testing.assert_allclose(list(body["probabilities"].values()), list(ref.probabilities.values()), atol=1e-6)
    assert body["model"] == {"name": "cnn", "version": "0.1.0", "runtime": "torch"}
    assert set(body["ood"]) == {"flagged", "reasons", "distance", "threshold", "layout_distance", "layout_threshold"} and body["notice"] == NOTICE
    assert "cam_png" not in body


def test_predict_dicom_reads_like_the_png(client, dicom_bytes):
    # The PNG re-encoded as a 16-bit DX DICOM whose window spans 0-255, so it reads back as the PNG.
    pixels = np.asarray(Image.open(PNG).convert("L"), dtype=np.uint16)
    r = _post(client, data=dicom_bytes(pixels, WindowCenter=128, WindowWidth=256), name="study.dcm")
    assert r.status_code == 200, r.text
    png = _post(client, PNG).json()
    np.testing.assert_allclose(list(r.json()["probabilities"].values()), list(png["probabilities"].values()), atol=1e-5)


def test_cam_and_overlay_are_decodable_pngs(client):
    body = _post(client, PNG, params={"cam": "true", "overlay": "true"}).json()
    cam, overlay = _png(body["cam_png"]), _png(body["overlay_png"])
    assert cam.mode == "RGB" and cam.size == overlay.size == Image.open(PNG).size  # 299 px < 512: native size
    assert np.asarray(cam).std(axis=-1).mean() > 1  # coloured by the heatmap; the plain overlay is gray
    assert np.asarray(overlay).std(axis=-1).mean() == 0
    form = client.post("/v1/predict", files={"file": ("x.png", PNG.read_bytes())}, data={"cam": "true"})
    assert "cam_png" in form.json()  # options work as form fields too
    form = client.post("/v1/predict", files={"file": ("x.png", PNG.read_bytes())}, data={"overlay": "true"})
    assert "overlay_png" in form.json() and "cam_png" not in form.json()  # overlay too (it was query-only)
    batch = client.post("/v1/predict/batch", files=[("files", ("x.png", PNG.read_bytes()))], data={"overlay": "true"})
    assert "overlay_png" in batch.json()["results"][0]


def test_batch_reports_each_file_in_order(client):
    files = [("files", ("a.png", PNG.read_bytes(), "image/png")), ("files", ("notes.png", b"hello", "image/png")),
             ("files", ("b.png", OTHER.read_bytes(), "image/png"))]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["file"] for x in body["results"]] == ["a.png", "notes.png", "b.png"]
    assert body["n_ok"] == 2 and body["n_failed"] == 1
    assert body["results"][1]["error"]["status"] == 415
    assert body["results"][0]["prediction"] == _post(client, PNG).json()["prediction"]
    too_many = [("files", (f"{i}.png", b"x", "image/png")) for i in range(17)]
    assert client.post("/v1/predict/batch", files=too_many).status_code == 422


# ------------------------------------------------------------------------------------------ errors
def test_upload_over_the_limit_is_413(client):
    big = b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024)
    r = _post(client, data=big)
    assert r.status_code == 413 and "limit is 1 MB" in r.json()["detail"]

    def chunked():  # no Content-Length: the server has to count
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        for _ in range(40):
            yield bytes(64 * 1024)
        yield b"\r\n--b--\r\n"

    r = client.post("/v1/predict", content=chunked(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"this is a text file, named .png", 415, "not a PNG, JPEG or DICOM"),
        (b"", 415, "not a PNG, JPEG or DICOM"),
        (PNG.read_bytes()[:4000], 422, "truncated"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), 422, "x.png"),
    ],
    ids=["text", "empty", "truncated-png", "png-header-only"],
)
def test_bad_uploads_get_clear_4xx(client, data, status, message):
    r = _post(client, data=data)
    assert r.status_code == status and message in r.json()["detail"]
    assert "/tmp" not in r.json()["detail"]  # names the upload, not the server's temporary file


def test_invalid_requests_are_422_with_a_readable_detail(client):
    r = client.post("/v1/predict")
    assert r.status_code == 422 and r.json()["detail"] == "file: Field required"
    r = _post(client, PNG, params={"masks": "bogus"})
    assert r.status_code == 422 and "masks" in r.json()["detail"]


def test_cam_on_a_model_without_gradcam_is_422(tmp_path):
    from lungxray.checkpoint import save_checkpoint
    from lungxray.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        weights = save_checkpoint(tmp_path / "mlp", create_model("mlp", input_size=32, hidden=(8,)), {"masks": "none"})
    client = TestClient(create_app(load_for_serving(weights)))
    assert client.get("/v1/model").json()["cam_available"] is False
    assert _post(client, PNG).status_code == 200
    r = _post(client, PNG, params={"cam": "true"})
    assert r.status_code == 422 and "Grad-CAM" in r.json()["detail"]


def test_page_and_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Research use only" in page.text and "not a medical device" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    assert {"/health", "/v1/model", "/v1/predict", "/v1/predict/batch"} <= set(client.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_need_no_other_host(client, page):
    import re

    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assert any(u.endswith(".js") for u in urls)
    for url in urls:
        assert not re.match(r"(https?:)?//", url), f"{page} loads {url} from another host"
        assert client.get(url).status_code == 200, url  # every asset it names is served here
    assert "/openapi.json" in html.text
    # ReDoc's bundle names a logo on its maker's CDN: the page's policy keeps the browser on this server.
    assert "default-src 'self'" in html.headers["content-security-policy"]


def test_the_page_revalidates_its_files_and_works_behind_a_path_prefix(client):
    import re

    page, script = client.get("/"), client.get("/static/app.js")
    for res in (page, script, client.get("/static/style.css")):
        assert res.headers["cache-control"] == "no-cache"  # no stale app.js after an upgrade
    # Relative links and requests, so that a proxy serving the app under /lx/ reaches /lx/static/..., /lx/v1/...
    assert not re.search(r"""(?:src|href)=["']/""", page.text)
    assert not re.search(r"""fetch\(\s*[`'"]/""", script.text)
    assert "v1/predict" in script.text and "v1/model" in script.text


# ------------------------------------------------------------------------------------- concurrency
def test_concurrent_requests_agree(client):
    images = {p.name: p.read_bytes() for p in (PNG, OTHER)}
    jobs = [name for name in images for _ in range(12)]  # 24 requests, 8 at a time

    def call(name):
        r = client.post("/v1/predict", files={"file": (name, images[name], "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        return name, body["probabilities"], body["ood"]["distance"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, jobs))
    for name in images:
        mine = [(p, d) for n, p, d in results if n == name]
        assert all(m == mine[0] for m in mine), f"{name}: concurrent answers differ"
    assert results[0][1] != results[-1][1]  # two different images: the comparison above means something


def test_onnx_runtime_serves_the_same_answers(tiny_run, client, tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGXRAY_CACHE", str(tmp_path))
    onnx_client = TestClient(create_app(load_for_serving(tiny_run, runtime="onnx")))
    assert onnx_client.get("/health").json()["runtime"] == "onnx"
    a, b = _post(client, PNG).json(), _post(onnx_client, PNG, params={"cam": "true"}).json()
    assert a["prediction"] == b["prediction"] and "cam_png" in b
    np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)


# ------------------------------------------------------------------------------------------- masks
@pytest.fixture(scope="module")
def masked_weights(tmp_path_factory) -> Path:
    from lungxray.checkpoint import save_checkpoint
    from lungxray.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("cnn", input_size=32, channels=(8, 16, 16), dense=(8,))
    return save_checkpoint(tmp_path_factory.mktemp("masked") / "masked", model, {"masks": "predicted"})


def test_masked_model_shows_the_lung_outline(masked_weights, stand_in_segmenter):
    client = TestClient(create_app(Predictor.load(masked_weights, segmenter=stand_in_segmenter(), cam=True)))
    card = client.get("/v1/model").json()
    assert card["masking"] == {"trained_on": "predicted", "default": "auto", "per_request": ["auto", "none"]}
    body = _post(client, PNG, params={"overlay": "true", "cam": "true"}).json()
    assert body["mask"] == "predicted"
    green = np.all(np.asarray(_png(body["overlay_png"])) == (57, 255, 20), axis=-1)
    assert 0.001 < green.mean() < 0.05  # an outline, not a filled area
    assert green[:, :30].sum() == 0 and green[:, 30:].any()  # around the central ellipse only
    unmasked = _post(client, PNG, params={"masks": "none", "overlay": "true"}).json()
    assert unmasked["mask"] is None and unmasked["probabilities"] != body["probabilities"]


def test_masked_model_without_a_segmenter_is_503_not_500(masked_weights, monkeypatch):
    pred = Predictor.load(masked_weights)

    def unavailable(example=None):
        from lungxray.errors import CheckpointError
        from lungxray.predict.masks import _no_segmenter

        raise CheckpointError(_no_segmenter(pred.model.name, "no weights in this test", example))

    monkeypatch.setattr(pred, "segmenter", unavailable)
    client = TestClient(create_app(pred))
    r = _post(client, PNG)
    assert r.status_code == 503 and "masks=none" in r.json()["detail"]  # the request parameter that works
    assert _post(client, PNG, params={"masks": "none"}).status_code == 200


# --------------------------------------------------------------------------------------------- CLI
def test_serve_command_binds_loopback_by_default(tiny_run, monkeypatch):
    import uvicorn
    from click.testing import CliRunner

    from lungxray.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    res = CliRunner().invoke(main, ["serve", "--model", str(tiny_run), "--max-upload-mb", "5"])
    assert res.exit_code == 0, res.output
    app, kw = calls[0]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8000
    assert "http://127.0.0.1:8000/" in res.output and "not a medical device" in res.output and "warning" not in res.output
    assert TestClient(app).get("/v1/model").json()["max_upload_mb"] == 5
    res = CliRunner().invoke(main, ["serve", "--model", str(tiny_run), "--host", "0.0.0.0"])
    assert calls[1][1]["host"] == "0.0.0.0" and "no authentication" in res.output
    res = CliRunner().invoke(main, ["serve", "--model", str(tiny_run), "--onnx", "x.onnx"])
    assert res.exit_code == 2 and "--runtime onnx" in res.output

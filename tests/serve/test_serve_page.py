"""The web page in a real browser: Debian's chromium driven by Playwright against a live uvicorn server.

Skipped, with the reason shown in pytest's summary, where playwright or /usr/bin/chromium is missing
(`.ci/run` installs chromium; `playwright install` cannot download browsers on these machines).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from lungxray.serve import create_app
from lungxray.serve.run import load_for_serving

CHROMIUM = Path(os.environ.get("LUNGXRAY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
PNG = SAMPLE / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png"
SCREENSHOT_COPY = os.environ.get("LUNGXRAY_SCREENSHOT_COPY")
"""Set to a path (e.g. docs/img/webpage.png) to keep a copy of the result screenshot."""


def _playwright():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("browser test not run: Python package playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"browser test not run: no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright, expect


@pytest.fixture(scope="module")
def live_server(tiny_run):
    """The real app under uvicorn on 127.0.0.1 and a free port, in a background thread."""
    import uvicorn

    _playwright()  # skip before starting anything when there is no browser
    pred = load_for_serving(tiny_run)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    server = uvicorn.Server(uvicorn.Config(create_app(pred), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", pred
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_upload_shows_prediction_bars_and_notice(live_server, tmp_path):
    sync_playwright, expect = _playwright()
    url, pred = live_server
    expected = next(pred.predict_paths([PNG]))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.goto(url + "/")
            expect(page.locator("#notice")).to_contain_text("Research use only")
            expect(page.locator("#notice")).to_contain_text("not a medical device")
            expect(page.locator("#model")).to_contain_text("cnn")

            page.set_input_files("#file", str(PNG))
            expect(page.locator("#prediction")).to_have_text(expected.prediction, timeout=15000)
            rows = page.locator("#bars .bar-row")
            expect(rows).to_have_count(3)
            assert rows.locator(".bar-name").all_text_contents() == pred.classes
            shown = [float(t.rstrip("%")) for t in rows.locator(".bar-value").all_text_contents()]
            assert shown == pytest.approx([100 * expected.probabilities[c] for c in pred.classes], abs=0.051)
            expect(page.locator(f'#bars .bar-row.top[data-class="{expected.prediction}"]')).to_have_count(1)
            width = page.locator("#bars .bar-row.top .bar-fill").evaluate("e => e.getBoundingClientRect().width")
            assert width > 0
            assert page.locator("#xray").evaluate("img => img.complete && img.naturalWidth") > 0
            expect(page.locator("#tab-cam")).to_have_attribute("aria-selected", "true")
            shot = tmp_path / "webpage.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if SCREENSHOT_COPY:
                shutil.copy(shot, SCREENSHOT_COPY)

            # a text file named .png: a readable message in the page, never raw JSON
            bad = tmp_path / "notes.png"
            bad.write_text("not an x-ray\n")
            page.set_input_files("#file", str(bad))
            error = page.locator("#error")
            expect(error).to_be_visible()
            expect(error).to_contain_text("not an X-ray image")
            assert "{" not in error.inner_text()
            expect(page.locator("#result")).to_be_hidden()
            page.screenshot(path=str(tmp_path / "webpage-error.png"), full_page=True)
            assert not page_errors, page_errors
        finally:
            browser.close()

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


def test_several_uploads_show_one_card_each_in_the_two_line_format(live_server, tmp_path):
    from PIL import Image

    sync_playwright, expect = _playwright()
    url, pred = live_server
    expected = next(pred.predict_paths([PNG]))
    flat = tmp_path / "flat.png"  # a uniform grey square: the OOD guard flags it
    Image.new("L", (256, 256), 128).save(flat)
    bad = tmp_path / "notes.png"  # a text file named .png
    bad.write_text("not an x-ray\n")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.goto(url + "/")
            expect(page.locator("#notice")).to_contain_text("Research use only")
            expect(page.locator("#notice")).to_contain_text("not a medical device")
            expect(page.locator("#model")).to_contain_text("cnn")

            page.set_input_files("#file", [str(PNG), str(flat), str(bad)])
            cards = page.locator("#results .card")
            expect(cards).to_have_count(3)
            expect(page.locator("#busy")).to_be_hidden(timeout=30000)
            assert [cards.nth(i).get_attribute("data-file") for i in range(3)] == [PNG.name, "flat.png", "notes.png"]

            # 1: the study's two lines, then the bars
            first = cards.nth(0)
            expect(first.locator(".prediction")).to_have_text(expected.prediction)
            expect(first.locator(".probability")).to_have_text(f"{100 * expected.probability:.1f}%")
            lines = first.locator(".answer .line:visible").all_inner_texts()
            assert lines == [f"Prediction: {expected.prediction}", f"Probability: {100 * expected.probability:.1f}%"]
            rows = first.locator(".bar-row")
            expect(rows).to_have_count(3)
            assert rows.locator(".bar-name").all_text_contents() == pred.classes
            shown = [float(t.rstrip("%")) for t in rows.locator(".bar-value").all_text_contents()]
            assert shown == pytest.approx([100 * expected.probabilities[c] for c in pred.classes], abs=0.051)
            expect(first.locator(f'.bar-row.top[data-class="{expected.prediction}"]')).to_have_count(1)
            assert first.locator(".bar-row.top .bar-fill").evaluate("e => e.getBoundingClientRect().width") > 0
            assert first.locator(".xray").evaluate("img => img.complete && img.naturalWidth") > 0
            expect(first.locator(".tab-cam")).to_have_attribute("aria-selected", "true")

            # 2: out of distribution: the warning instead of a probability and bars
            second = cards.nth(1)
            expect(second.locator(".ood")).to_be_visible()
            expect(second.locator(".ood")).to_contain_text("no probability is shown")
            expect(second.locator(".bars")).to_be_hidden()
            expect(second.locator(".probability-line")).to_be_hidden()
            assert "%" not in second.locator(".answer").inner_text()

            # 3: unreadable: a readable message in its card, never raw JSON; the other cards stay
            third = cards.nth(2)
            expect(third.locator(".card-error")).to_be_visible()
            expect(third.locator(".card-error")).to_contain_text("not an X-ray image")
            assert "{" not in third.locator(".card-error").inner_text()
            expect(third.locator(".answer")).to_be_hidden()

            shot = tmp_path / "webpage.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if SCREENSHOT_COPY:
                shutil.copy(shot, SCREENSHOT_COPY)

            # A new selection replaces the grid.
            page.set_input_files("#file", str(PNG))
            expect(cards).to_have_count(1)
            expect(cards.nth(0).locator(".prediction")).to_have_text(expected.prediction)
            assert not page_errors, page_errors
        finally:
            browser.close()

"""A real headless Chromium (Debian's, driven by Playwright) clicks through the served page."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest
from conftest import ServerThread

from rnnlab.config import ServeLimits
from rnnlab.serve.http import create_app, load_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags keep Chromium off the network it cannot reach here (its background services retry endlessly).
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium chromium-driver; `make test` installs it)"
)


@pytest.fixture(scope="module")
def page(served_run):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (the test extra)")
    with ServerThread(create_app(lambda: load_run(served_run, bf16=False), ServeLimits())) as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.05)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page()
            outside: list[str] = []
            tab.on("request", lambda request: None if request.url.startswith(url) else outside.append(request.url))
            tab.goto(url + "/")
            yield tab
            assert outside == [], f"the page loaded from outside the server: {outside}"
            browser.close()


def _classified(page, click: str) -> None:
    page.evaluate("document.getElementById('result').style.display = 'none'")
    page.click(click)
    page.wait_for_selector("#result", state="visible", timeout=20_000)


def test_page_shows_the_model(page):
    page.wait_for_function("document.getElementById('model').textContent.startsWith('run:')", timeout=20_000)
    assert "labels neg, pos" in page.inner_text("#model")


def test_examples_give_a_label_bars_and_highlights(page, tmp_path):
    _classified(page, "text=Negation")
    label = page.inner_text("#label")
    assert label.split(" ")[0] in ("neg", "pos") and "%" in label
    bars = page.query_selector_all("#bars [role=progressbar]")
    assert len(bars) == 2
    assert sum(float(bar.get_attribute("aria-valuenow")) for bar in bars) == pytest.approx(100, abs=0.2)
    tokens = page.query_selector_all("#tokens span.tok:not(.special)")
    assert tokens and any(float(t.get_attribute("data-score")) != 0 for t in tokens)
    assert any("rgba" in (t.get_attribute("style") or "") for t in tokens)
    assert "ms" in page.inner_text("#details")

    _classified(page, "text=Typos")
    assert page.inner_text("#label").split(" ")[0] in ("neg", "pos")

    _classified(page, "text=Long review")
    assert "tokens — truncated (head + tail)" in page.inner_text("#details")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_keyboard_only_classification(page):
    page.fill("#text", "")
    page.focus("#text")
    page.keyboard.type("a good and lovely film")
    page.evaluate("document.getElementById('result').style.display = 'none'")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result", state="visible", timeout=20_000)
    # The tiny vocabulary spells words out: [CLS] a g ##o ##o ##d a ##n ##d l ##o ##v ##e ##l ##y f ##i ##l ##m [SEP]
    assert page.inner_text("#details").startswith("20 tokens — truncated (head + tail)")


def test_a_failed_request_shows_the_server_message(page):
    page.fill("#text", "   ")
    page.click("#classify")
    page.wait_for_selector("#error", state="visible", timeout=20_000)
    assert "the text is empty (HTTP 400)" in page.inner_text("#error")
    assert not page.is_visible("#result")

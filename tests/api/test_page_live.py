"""The page's Live mode in real headless Chromium (Debian's package, driven by Playwright):
the fake microphone plays two English sentences with a pause between them, built in the run
from ../shared/audio; the page streams them through its AudioWorklet to /v1/realtime on
``python -m chatserver`` (API keys on: the key travels as the WebSocket subprotocol), and
shows provisional words while each sentence plays, then each sentence's final text.
"""

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.support.browser import axe_violations, chromium
from tests.support.corpus import clip, wer
from tests.support.live import sentences, wav
from tests.support.servers import Server, uvicorn_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

API_KEY = "live-page-key-0123456789"
SPEECH = [clip("fleurs-en-003.ogg"), clip("fleurs-en-004.ogg")]  # 5.8 s and 4.3 s
# Through the browser's resampling and echo cancellation: a little more than the clips alone.
MAX_WER = 0.25

# Snapshots of the transcript as it changes: [ms since start, provisional text, final text].
WATCH_TRANSCRIPT = """() => {
  const start = performance.now();
  window.seen = [];
  const read = () => {
    const text = (selector) =>
      [...document.querySelectorAll(`#transcript ${selector}`)].map((e) => e.textContent).join(" ").trim();
    window.seen.push([performance.now() - start, text(".provisional"), text(".final")]);
  };
  new MutationObserver(read).observe(document.querySelector("#transcript"),
    {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("page-live")
    env = {"CHATSERVER_TMP_DIR": str(tmp), "CHATSERVER_API_KEYS": API_KEY}
    with uvicorn_server(env, tmp.parent / "page-live.log") as started:
        yield started


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two sentences as the WAV file Chromium's fake microphone plays, once."""
    path = tmp_path_factory.mktemp("live-microphone") / "two-sentences.wav"
    path.write_bytes(wav(sentences(SPEECH, gap_s=1.5, lead_s=1.0).pcm))
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as started:
        yield started


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_function("() => document.querySelectorAll('#language option').length > 1")
    return page


def test_live_mode_shows_provisional_then_final_words(
    playwright: Playwright, microphone: Path, server: Server
) -> None:
    with chromium(playwright, microphone=microphone) as browser:
        page = open_page(browser, f"{server.url}/")
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("websocket", lambda socket: requests.append(socket.url))
        expect(page.locator("#dictate")).to_be_visible()
        page.select_option("#language", "en")
        page.evaluate(WATCH_TRANSCRIPT)
        page.click("#dictate")
        # Keys are on: the page asks for one before it opens the WebSocket.
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#api-key", API_KEY)
        page.click("#key-dialog button[value=ok]")
        expect(page.locator("#dictate")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#status")).to_contain_text("Listening")
        # While it listens: the controls, the provisional words and all pass the accessibility check.
        page.wait_for_function(
            "() => window.seen.some(([, provisional]) => provisional.length > 0)", timeout=30_000
        )
        serious = [v for v in axe_violations(page) if v["impact"] in ("serious", "critical")]
        assert not serious, serious
        finals = "[...document.querySelectorAll('#transcript .final')].filter((e) => e.textContent)"
        page.wait_for_function(f"() => {finals}.length > 1", timeout=90_000)
        page.click("#dictate")  # Stop
        expect(page.locator("#status")).to_have_text("Done.", timeout=30_000)
        expect(page.locator("#dictate")).to_have_attribute("aria-pressed", "false")
        seen = page.evaluate("() => window.seen")
        final = page.inner_text("#transcript")

    first_final = next(at for at, _, final_text in seen if final_text)
    first_provisional = next(at for at, provisional, _ in seen if provisional)
    assert first_provisional < first_final, seen
    # Provisional words of the second sentence came after the first sentence's final text.
    assert any(at > first_final and provisional for at, provisional, _ in seen), seen
    assert wer(" ".join(c.reference for c in SPEECH), final) <= MAX_WER, final
    # Everything came from the server under test (no CDN), the WebSocket included.
    host = urlsplit(server.url).netloc
    assert all(urlsplit(url).netloc == host or url.startswith("data:") for url in requests), requests
    assert any(url.startswith(f"ws://{host}/v1/realtime") for url in requests), requests


def test_live_mode_is_not_offered_where_the_server_does_not_offer_it(
    playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("page-no-live")
    env = {"CHATSERVER_TMP_DIR": str(tmp), "CHATSERVER_REALTIME_ENABLED": "false"}
    with uvicorn_server(env, tmp.parent / "page-no-live.log") as off, chromium(playwright) as browser:
        page = open_page(browser, f"{off.url}/")
        assert page.evaluate("() => fetch('config').then((r) => r.json()).then((c) => c.live)") is False
        expect(page.locator("#dictate")).to_be_hidden()
        expect(page.locator("#dictate-help")).to_be_hidden()
        expect(page.locator("#record")).to_be_visible()  # Record and the file picker stay

"""The voice-note page in real headless Chromium (Debian's package, driven by Playwright).

Real: uvicorn and the Lambda path (infra/emulation/gateway.py: API Gateway events through the
Runtime Interface Emulator) on 127.0.0.1, the model on recordings of ../shared/audio, the
browser's MediaRecorder fed by Chromium's fake microphone from a WAV of jfk.flac, S3 as a
moto server the browser posts the presigned form to (bucket CORS as in template.yaml).
Stand-in: this test plays S3's event notification to the job runner, in its own thread.
"""

import contextlib
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from imageio_ffmpeg import get_ffmpeg_exe
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, expect, sync_playwright

from chatserver.core.settings import Settings
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import ObjectCreated
from chatserver.speech.service import TranscriptionService
from tests.support import REPO
from tests.support.browser import axe_violations, chromium
from tests.support.corpus import clip, normalise, wer
from tests.support.s3 import moto_server
from tests.support.servers import Server, uvicorn_server

# Headless Chromium, uvicorn servers and the model for the module: about a minute in all.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "tests" / "artifacts"
JFK = clip("jfk.flac")
# The fake microphone loops the file from wherever Chromium happens to start it, and the
# model hears the Opus re-encoding of that cut: "ask not" sometimes comes out "asked not"
# (seen in one full-suite run). The words are checked by WER and by the sentence's core.
JFK_WORDS = "not what your country can do for you"
JFK_MAX_WER = 0.25  # two wrong words of the 22 in one clean pass is 0.09


def assert_jfk_words(text: str) -> None:
    assert JFK_WORDS in normalise(text), text
    assert wer(JFK.reference, text) <= JFK_MAX_WER, text


FRENCH = clip("fleurs-fr-000.ogg")  # 10.2 s
FRENCH_HOLD = clip("fleurs-fr-001.ogg")  # 23.4 s: keeps the one slot busy for a few seconds
LONG = clip("long-fr-fleurs-000-004.webm")  # 63.4 s, over this suite's 30 s synchronous limit
# Measured with greedy decoding (beam 1) on this clip: WER 0.25 ("sembleraient", "était").
FRENCH_MAX_WER = 0.35
# Measured the same way on the 63 s recording, in one pass as the job runner does: WER 0.32.
LONG_MAX_WER = 0.45
MAX_AUDIO_SECONDS = 30
MAX_UPLOAD_BYTES = 1_500_000
API_KEY = "page-test-key-0123456789"
BUCKET = "chatserver-page"
REGION = "us-east-1"
ANSWER_TIMEOUT_MS = 120_000

# Greedy decoding and one slot with no waiting line: the busy test fills it with one request.
BASE_ENV = {
    "CHATSERVER_BEAM_SIZE": "1",
    "CHATSERVER_MAX_AUDIO_SECONDS": str(MAX_AUDIO_SECONDS),
    "CHATSERVER_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    "CHATSERVER_MAX_CONCURRENT_JOBS": "1",
    "CHATSERVER_MAX_QUEUED_JOBS": "0",
}


# --- servers and browsers -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("page-plain")
    env = {**BASE_ENV, "CHATSERVER_TMP_DIR": str(tmp)}
    with uvicorn_server(env, tmp.parent / "page-plain.log") as server:
        yield server


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    with chromium(playwright) as launched:
        yield launched


@pytest.fixture(scope="module")
def jfk_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jfk.flac as the 16-bit PCM WAV that Chromium's fake microphone plays."""
    wav = tmp_path_factory.mktemp("microphone") / "jfk.wav"
    decode = [get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(JFK.path), "-ac", "1"]
    subprocess.run([*decode, "-ar", "48000", "-c:a", "pcm_s16le", str(wav)], check=True, timeout=60)
    return wav


@pytest.fixture(scope="module")
def mic_browser(playwright: Playwright, jfk_wav: Path) -> Iterator[Browser]:
    with chromium(playwright, microphone=jfk_wav) as launched:
        yield launched


@dataclass
class Tab:
    page: Page
    context: BrowserContext
    requests: list[Request] = field(default_factory=list)

    def urls(self) -> list[str]:
        return [r.url for r in self.requests]


@contextlib.contextmanager
def open_page(browser: Browser, url: str, **context_options: Any) -> Iterator[Tab]:
    """``url`` in a fresh context, once the page has read /config (the language list is filled)."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
    tab = Tab(context.new_page(), context)
    context.on("request", lambda request: tab.requests.append(request))
    tab.page.set_default_timeout(30_000)
    try:
        tab.page.goto(url)
        tab.page.wait_for_function("() => document.querySelectorAll('#language option').length > 1")
        yield tab
    finally:
        context.close()


def transcript_of(page: Page) -> str:
    page.wait_for_selector("#details:not([hidden])", timeout=ANSWER_TIMEOUT_MS)
    return page.inner_text("#transcript")


def error_of(page: Page) -> str:
    page.wait_for_selector("#error:not([hidden])", timeout=ANSWER_TIMEOUT_MS)
    return page.inner_text("#error-text")


def assert_readable(message: str) -> None:
    """A sentence for a person: no JSON, no status code, no field names."""
    assert message.endswith("."), message
    for raw in ("{", '"error"', "413", "415", "503", "_"):
        assert raw not in message, message


def only_from(tab: Tab, *origins: str) -> None:
    """No request left the servers under test: no CDN, no network at all."""
    strays = [url for url in tab.urls() if not url.startswith(origins) and not url.startswith("data:")]
    assert not strays, strays


# --- recording from the microphone ----------------------------------------------------------------
# Observes what the page hands to fetch (Playwright does not expose a Blob inside FormData):
# the file part's name, type and first bytes; the call itself goes on unchanged.
WATCH_UPLOADS = """() => {
  const send = window.fetch;
  window.sentFiles = [];
  window.fetch = async (url, options) => {
    const file = options && options.body instanceof FormData ? options.body.get("file") : null;
    if (file) {
      const head = new Uint8Array(await file.slice(0, 1024).arrayBuffer());
      window.sentFiles.push({url: String(url), name: file.name, type: file.type, head: Array.from(head)});
    }
    return send(url, options);
  };
}"""


def record_and_stop(
    page: Page, seconds: float, while_recording: Callable[[Page], None] | None = None
) -> dict[str, Any]:
    """Click Record, watch the clock and the level meter while it records, then click Stop."""
    page.evaluate(WATCH_UPLOADS)
    page.click("#record")
    expect(page.locator("#record")).to_have_attribute("aria-pressed", "true")
    if while_recording is not None:
        while_recording(page)
    levels: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        levels.append(float(page.eval_on_selector("#level", "meter => meter.value")))
        page.wait_for_timeout(250)
    clock = page.inner_text("#elapsed")
    page.click("#record")
    page.wait_for_function("() => window.sentFiles.length > 0")
    (sent,) = page.evaluate("() => window.sentFiles")
    return {"levels": levels, "clock": clock, "sent": sent}


def assert_recorded_jfk(
    page: Page, seconds: float = 12.5, while_recording: Callable[[Page], None] | None = None
) -> None:
    recorded = record_and_stop(page, seconds, while_recording)
    # The elapsed time ran, and the meter moved with the speech (silence keeps it near 0).
    minutes, secs = recorded["clock"].split(":")
    assert int(minutes) * 60 + int(secs) >= int(seconds) - 1, recorded["clock"]
    assert max(recorded["levels"]) > 0.4, recorded["levels"]
    assert min(recorded["levels"]) < max(recorded["levels"]) - 0.2, recorded["levels"]
    # What MediaRecorder made: a WEBM (EBML magic) with Opus audio, as chat apps send.
    sent = recorded["sent"]
    head = bytes(sent["head"])
    assert sent["url"] == "transcribe", sent["url"]  # relative: it stays under a stage
    assert (sent["name"], sent["type"]) == ("voice-note.webm", "audio/webm;codecs=opus"), sent
    assert head.startswith(b"\x1a\x45\xdf\xa3"), head[:64]
    assert b"A_OPUS" in head, head
    assert_jfk_words(transcript_of(page))
    assert "English (en), detected" in page.inner_text("#out-language")


def assert_accessible(page: Page) -> None:
    serious = [v for v in axe_violations(page) if v["impact"] in ("serious", "critical")]
    assert not serious, json.dumps(serious, indent=1)[:4000]


def test_recording_shows_the_words(mic_browser: Browser, plain: Server) -> None:
    with open_page(mic_browser, f"{plain.url}/") as tab:
        # The recording controls (clock, level meter, Stop) pass the accessibility check too.
        assert_recorded_jfk(tab.page, while_recording=assert_accessible)
        only_from(tab, plain.url)


@pytest.mark.emulator
def test_recording_through_the_lambda_path_under_a_stage(
    mic_browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from emulation import gateway

    log = tmp_path_factory.mktemp("page-lambda") / "rie.log"
    with gateway.lambda_http_server(stage="Prod", env=BASE_ENV, log=log, timeout_s=120) as api:
        # Without its slash the stage's page would resolve its relative URLs outside the stage.
        bare = httpx.get(api, timeout=120)
        assert (bare.status_code, bare.headers["location"]) == (308, "Prod/"), bare.text
        with open_page(mic_browser, f"{api}/") as tab:
            assert_recorded_jfk(tab.page)
            origin = api.removesuffix("/Prod")
            assert all(url.startswith(f"{api}/") for url in tab.urls()), tab.urls()
            only_from(tab, origin)
            # /docs under the stage too: Swagger UI's files and the schema come through Lambda.
            tab.page.goto(f"{api}/docs")
            tab.page.wait_for_selector(".opblock-summary-path[data-path='/transcribe']", timeout=60_000)
            only_from(tab, f"{api}/")


# --- files ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def french_page(browser: Browser, plain: Server) -> Iterator[Tab]:
    """The page after a French file went through the file picker (language: detect)."""
    with open_page(browser, f"{plain.url}/") as tab:
        tab.page.set_input_files("#file", FRENCH.path)
        transcript_of(tab.page)
        yield tab


def test_file_picker_with_a_french_clip_shows_french_text_and_the_language(french_page: Tab) -> None:
    page = french_page.page
    text = page.inner_text("#transcript")
    assert "l accident a eu lieu en terrain montagneux" in normalise(text), text
    assert wer(FRENCH.reference, text) < FRENCH_MAX_WER, text
    assert page.inner_text("#out-language") == "French (fr), detected"
    assert page.get_attribute("#transcript", "lang") == "fr"
    assert page.inner_text("#out-duration") == f"{FRENCH.duration:.1f} s"
    assert page.inner_text("#out-time").endswith(" s")
    expect(page.locator("#status")).to_have_text("Done.")


def test_screenshots_at_phone_and_desktop_width_light_and_dark(french_page: Tab) -> None:
    page = french_page.page
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((390, 844), (1280, 900)):
        page.set_viewport_size({"width": width, "height": height})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            shot = ARTIFACTS / f"page-{width}-{scheme}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000, shot
            # Nothing wider than the viewport: no sideways scrolling on a phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(17, 20, 24)") == (scheme == "dark"), (scheme, background)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_accessibility_no_serious_violations(french_page: Tab) -> None:
    page = french_page.page
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert_accessible(page)
    page.emulate_media(color_scheme="light")


def test_copy_button_puts_the_transcript_on_the_clipboard(french_page: Tab) -> None:
    page = french_page.page
    french_page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy")
    expect(page.locator("#status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("() => navigator.clipboard.readText()") == page.inner_text("#transcript")


def test_chosen_language_and_translation_into_english(browser: Browser, plain: Server) -> None:
    with open_page(browser, f"{plain.url}/") as tab:
        page = tab.page
        page.select_option("#language", "fr")
        page.check("#translate")
        page.set_input_files("#file", FRENCH.path)
        text = normalise(transcript_of(page))
        assert page.inner_text("#out-language") == "French (fr), as chosen"
        # English words for "l'accident a eu lieu en terrain montagneux".
        assert "accident" in text, text
        assert "mountain" in text, text
        assert "montagneux" not in text, text


def test_keyboard_focus_order_and_visible_focus(browser: Browser, plain: Server) -> None:
    with open_page(browser, f"{plain.url}/") as tab:
        page = tab.page
        order = []
        for _ in range(6):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", (order[-1], outline)
        assert order == ["language", "translate", "record", "dictate", "file", "A"], order
        # The result area is announced: a live region, and status messages in role=status.
        assert page.get_attribute("#result", "aria-live") == "polite"
        assert page.get_attribute("#status", "role") == "status"
        assert page.get_attribute("#error", "role") == "alert"


def test_non_audio_and_over_limit_files_show_readable_errors(
    browser: Browser, plain: Server, tmp_path: Path
) -> None:
    not_audio = tmp_path / "notes.webm"  # the name says audio; the bytes are not
    not_audio.write_text("Meeting notes, not a recording.\n" * 20)
    too_large = tmp_path / "large.wav"
    too_large.write_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1))
    with open_page(browser, f"{plain.url}/") as tab:
        page = tab.page
        page.set_input_files("#file", not_audio)
        message = error_of(page)
        assert "not a recording ChatServer can read" in message, message
        assert_readable(message)

        page.set_input_files("#file", too_large)
        page.wait_for_function(
            "() => document.querySelector('#error-text').textContent.includes('too large')"
        )
        message = page.inner_text("#error-text")
        assert message == "The file is too large: the limit here is 1.4 MB.", message

        page.set_input_files("#file", LONG.path)  # 63 s; no bucket on this server
        page.wait_for_function("() => document.querySelector('#error-text').textContent.includes('too long')")
        message = page.inner_text("#error-text")
        assert message == f"The recording is too long: the limit here is {MAX_AUDIO_SECONDS} seconds."

        # This browser has no capture device: Record says so in words.
        page.click("#record")
        page.wait_for_function(
            "() => document.querySelector('#error-text').textContent.includes('microphone')"
        )
        message = page.inner_text("#error-text")
        assert message == "No microphone was found. Connect one, or choose a recording instead.", message
        assert page.inner_text("#transcript") == ""


def test_a_refused_microphone_permission_is_explained(
    playwright: Playwright, jfk_wav: Path, plain: Server
) -> None:
    with (
        chromium(playwright, microphone=jfk_wav, allow_microphone=False) as refusing,
        open_page(refusing, f"{plain.url}/") as tab,
    ):
        page = tab.page
        page.click("#record")
        message = error_of(page)
        assert message.startswith("The browser did not allow the microphone."), message
        assert_readable(message)
        # Nothing is left recording: the button can start again.
        expect(page.locator("#record")).to_have_attribute("aria-pressed", "false")


def test_busy_server_shows_a_retry_message(browser: Browser, plain: Server) -> None:
    def hold_the_slot() -> None:
        with FRENCH_HOLD.path.open("rb") as audio:
            httpx.post(f"{plain.url}/transcribe", files={"file": audio}, timeout=120)

    with open_page(browser, f"{plain.url}/") as tab:
        page = tab.page
        holder = threading.Thread(target=hold_the_slot)
        holder.start()
        try:
            deadline = time.monotonic() + 30
            while httpx.get(f"{plain.url}/health", timeout=10).json()["admitted"] < 1:
                assert time.monotonic() < deadline, "the holding request never got the slot"
                time.sleep(0.02)
            page.set_input_files("#file", JFK.path)
            message = error_of(page)
        finally:
            holder.join(120)
        assert message == "The server is busy with other recordings right now. Please try again in 5 seconds."
        expect(page.locator("#retry")).to_be_visible()
        page.click("#retry")
        assert_jfk_words(transcript_of(page))
        expect(page.locator("#error")).to_be_hidden()


def test_docs_render_the_api_offline(browser: Browser, plain: Server) -> None:
    with open_page(browser, f"{plain.url}/") as tab:
        page = tab.page
        page.click("text=API documentation")
        page.wait_for_selector(".opblock-summary-path[data-path='/transcribe']", timeout=60_000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
        assert {"/transcribe", "/jobs", "/health", "/config"} <= set(paths), paths
        assert page.title() == "ChatServer API"
        only_from(tab, plain.url)


# --- the jobs path, with API keys on --------------------------------------------------------------
@dataclass
class JobsServer:
    server: Server
    s3: Any
    runs: list[str]  # upload keys the runner handled
    failures: list[BaseException]  # what the runner raised (the page would wait forever)


def _play_s3_notifications(s3: Any, settings: Settings, stop: threading.Event, jobs: JobsServer) -> None:
    """What the bucket's ObjectCreated notification and Lambda do: each new upload is handled
    by the real job runner (real engine), which writes its progress to the bucket."""
    runner = JobRunner(TranscriptionService.from_settings(settings), settings, s3)
    seen: set[str] = set()
    while not stop.wait(0.2):
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=settings.upload_prefix)
        for obj in listing.get("Contents", []):
            if obj["Key"] not in seen:
                seen.add(obj["Key"])
                try:
                    runner.handle(ObjectCreated(BUCKET, obj["Key"], obj["ETag"].strip('"'), obj["Size"]))
                except Exception as error:  # kept for the test to report, with its traceback
                    logging.getLogger(__name__).exception("the job runner failed on %s", obj["Key"])
                    jobs.failures.append(error)
                jobs.runs.append(obj["Key"])


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsServer]:
    tmp = tmp_path_factory.mktemp("page-jobs")
    with moto_server() as moto:
        aws = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        s3 = moto.client("s3", REGION)
        s3.create_bucket(Bucket=BUCKET)
        env = {
            **BASE_ENV,
            **aws,
            "CHATSERVER_TMP_DIR": str(tmp),
            "CHATSERVER_BUCKET": BUCKET,
            "CHATSERVER_S3_ENDPOINT_URL": moto.endpoint,
            "CHATSERVER_API_KEYS": API_KEY,
        }
        settings = Settings(
            bucket=BUCKET, s3_endpoint_url=moto.endpoint, beam_size=1, progress_interval_s=1, tmp_dir=tmp
        )
        stop = threading.Event()
        with uvicorn_server(env, tmp.parent / "page-jobs.log") as server:
            # As template.yaml's CorsRules: browsers on the page's origin may POST the form.
            s3.put_bucket_cors(
                Bucket=BUCKET,
                CORSConfiguration={
                    "CORSRules": [
                        {
                            "AllowedMethods": ["POST"],
                            "AllowedOrigins": [server.url],
                            "AllowedHeaders": ["*"],
                            "ExposeHeaders": ["ETag", "Location"],
                        }
                    ]
                },
            )
            jobs = JobsServer(server, s3, runs=[], failures=[])
            notifier = threading.Thread(
                target=_play_s3_notifications, args=(s3, settings, stop, jobs), daemon=True
            )
            notifier.start()
            try:
                yield jobs
            finally:
                stop.set()
                notifier.join(120)


def _progress_seen(page: Page) -> Callable[[], list[float]]:
    values: list[float] = []

    def on_response(response: Any) -> None:
        if "/jobs/" in response.url and response.request.method == "GET" and response.ok:
            doc = response.json()
            if doc["status"] == "processing":
                values.append(doc["progress"])

    page.on("response", on_response)
    return lambda: values


@pytest.mark.s3server
def test_long_file_goes_through_a_job_and_the_progress_bar_reaches_the_end(
    browser: Browser, jobs_server: JobsServer
) -> None:
    url = jobs_server.server.url
    with open_page(browser, f"{url}/") as tab:
        page = tab.page
        assert "sent as a job" in page.inner_text("#limits")
        progress = _progress_seen(page)
        page.set_input_files("#file", LONG.path)
        # The first call to the API gets a 401: the page asks for a key, once.
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.fill("#api-key", API_KEY)
        page.click("#key-dialog button[value=ok]")
        text = transcript_of(page)
        assert wer(LONG.reference, text) < LONG_MAX_WER, text
        assert page.inner_text("#out-language") == "French (fr), detected"
        assert page.inner_text("#out-duration") == "1 min 03 s"
        assert page.eval_on_selector("#progress", "bar => bar.value") == 1
        # Fed by the result document's progress while it was processing.
        seen = progress()
        assert seen, "no processing document was polled"
        assert seen == sorted(seen), seen
        assert 0 <= seen[0] < 1, seen
        assert seen[-1] <= 1, seen
        assert len(jobs_server.runs) == 1, jobs_server.runs
        assert not jobs_server.failures, jobs_server.failures
        # The key lives in this tab's session storage only, and was never sent to S3.
        assert page.evaluate("sessionStorage.getItem('chatserver.apiKey')") == API_KEY
        assert page.evaluate("localStorage.length") == 0
        uploads = [r for r in tab.requests if r.method == "POST" and not r.url.startswith(url)]
        assert len(uploads) == 1, [r.url for r in uploads]
        assert "authorization" not in uploads[0].all_headers()

        # A second recording: the key is reused, nobody is asked again.
        page.set_input_files("#file", JFK.path)
        assert_jfk_words(transcript_of(page))
        expect(dialog).to_be_hidden()
        unauthorized = [r for r in tab.requests if (resp := r.response()) is not None and resp.status == 401]
        assert len(unauthorized) == 1, [r.url for r in unauthorized]

"""Headless Chromium for the page's tests: Debian's ``chromium`` package, driven by Playwright.

Nothing here downloads a browser (``playwright install`` is never run): Playwright launches
the binary that infra/install.sh --dev installs. The microphone can be fed from a WAV file
through Chromium's fake capture device, so a recording test hears a real recording.
"""

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

from tests.support import REPO

AXE = REPO / "tests" / ".npm" / "node_modules" / "axe-core" / "axe.min.js"

# As root, in a sandbox with no network: no sandboxing of its own, no GPU, and none of the
# background connections (updates, field trials, sync) that a closed network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            raise FileNotFoundError("chromium is not installed: bash infra/install.sh --dev installs it")
        pytest.skip("chromium is not installed (bash infra/install.sh --dev installs it)")
    return found


@contextlib.contextmanager
def chromium(
    playwright: Playwright, microphone: Path | None = None, allow_microphone: bool = True
) -> Iterator[Browser]:
    """A headless browser; with ``microphone``, getUserMedia hears that WAV file, once, or
    with ``allow_microphone=False`` is refused as when a person blocks the permission prompt.
    Without ``microphone`` the browser has no capture device at all.

    One ``sync_playwright()`` per process can run at a time: launch every browser from it.
    """
    flags = list(FLAGS)
    if microphone is not None:
        flags += [
            "--use-fake-device-for-media-stream",
            # %noloop: the file plays once, then silence (it would loop otherwise).
            f"--use-file-for-fake-audio-capture={microphone}%noloop",
        ]
        if allow_microphone:
            flags.append("--use-fake-ui-for-media-stream")  # accepts the permission prompt
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=flags, timeout=60_000)
    try:
        yield browser
    finally:
        browser.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (its WCAG 2.x A and AA rules)."""
    if not AXE.is_file():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"{AXE} is missing: bash infra/install.sh --dev installs axe-core")
        pytest.skip("axe-core is not installed (bash infra/install.sh --dev installs it)")
    # Evaluated through the DevTools protocol, which the page's Content-Security-Policy
    # (script-src 'self') does not apply to, unlike an injected <script>.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "() => axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    return result["violations"]

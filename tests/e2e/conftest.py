"""Browser tests: a live server on loopback and Debian's Chromium driven by Playwright.

The server is the real app (``create_app``) on a temporary data directory, served by
uvicorn in a thread on a free port. The browser is ``/usr/bin/chromium`` (override with
``IGPT_E2E_CHROMIUM``), headless, with a fake microphone that plays a clip spoken by
espeak-ng. Without Chromium or Playwright every e2e test is skipped with the reason.
Screenshots of each state go to ``test-output/e2e/``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.live import CHROMIUM, CHROMIUM_ARGS, SHOTS, SPOKEN, LiveServer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tests, saying why, where they cannot run."""
    reason = _missing_browser()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "e2e: the Python package 'playwright' is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"e2e: no Chromium at {CHROMIUM}; apt-get install chromium (or set IGPT_E2E_CHROMIUM)"
    return None


# ---- the live server ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app, served by uvicorn in a thread on a free loopback port."""
    import uvicorn

    from igpt_server.app import create_app
    from igpt_server.settings import Settings

    data_dir = tmp_path_factory.mktemp("e2e-data")
    app = create_app(Settings(data_dir=data_dir))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the e2e server did not start within 30 s")
        time.sleep(0.05)
    yield LiveServer(url=f"http://127.0.0.1:{port}", data_dir=data_dir)
    server.should_exit = True
    thread.join(timeout=10)


# ---- the browser ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def spoken_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16 kHz mono wav of :data:`SPOKEN`, made with espeak-ng (the fake microphone's input)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("e2e voice: espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("voice")
    raw = folder / "raw.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "140", "-w", str(raw), SPOKEN], check=True, capture_output=True)
    wav = folder / "spoken.wav"
    sox = shutil.which("sox")
    if sox is not None:  # pad with silence so the recorder catches the whole phrase
        subprocess.run(
            [sox, str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav), "pad", "0.3", "0.6"],
            check=True,
            capture_output=True,
        )
    else:
        shutil.copy(raw, wav)
    return wav


@pytest.fixture(scope="session")
def browser(spoken_wav: Path) -> Iterator[Any]:
    """Headless Chromium with a fake microphone that says :data:`SPOKEN`."""
    from playwright.sync_api import sync_playwright

    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={spoken_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield chromium
        chromium.close()


class PageErrors(list[str]):
    """Uncaught errors and console errors of a page (a test fails on any it did not expect)."""


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh page (its own storage, so its own session) on the live server's canvas page."""
    context = browser.new_context(viewport={"width": 1400, "height": 860}, device_scale_factor=1)
    context.grant_permissions(["microphone"], origin=live_server.url)
    pg = context.new_page()
    errors = PageErrors()
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    pg.errors = errors
    pg.set_default_timeout(20_000)
    pg.goto(live_server.url + "/")
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()
    crashes = [e for e in errors if e.startswith("pageerror")]
    assert not crashes, f"the page threw: {crashes}"


@pytest.fixture
def shot() -> Any:
    """``shot(page, name)`` saves a screenshot to test-output/e2e/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take

"""The canvas page on a server that needs API keys (`auth = "keys"`), in a real browser.

The page asks for a key, keeps it for the tab, sends it with every call and as the
`igpt_key` cookie (so thumbnails and the stage's `<img>` load), and asks again when the
server refuses it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import _free_port
from tests.e2e.live import LiveServer
from tests.e2e.pages import open_image

pytestmark = pytest.mark.e2e

KEY = "igpt_e2e-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app with one API key, served on a free loopback port."""
    import uvicorn

    from igpt_server.app import create_app
    from igpt_server.auth import hash_key
    from igpt_server.settings import Settings

    data_dir = tmp_path_factory.mktemp("e2e-keys")
    app = create_app(Settings(data_dir=data_dir, auth="keys", api_keys={"e2e": hash_key(KEY)}))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="e2e-uvicorn-keys", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the keyed e2e server did not start within 30 s")
        time.sleep(0.05)
    yield LiveServer(url=f"http://127.0.0.1:{port}", data_dir=data_dir)
    server.should_exit = True
    thread.join(timeout=10)


def test_the_page_asks_for_a_key_and_asks_again_when_it_is_refused(
    browser: Any, keyed_server: LiveServer, shot: Any
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    page = context.new_page()
    try:
        page.goto(keyed_server.url + "/")
        page.wait_for_selector("#auth-dialog[open]")
        shot(page, "40-key-asked")
        page.fill("#auth-dialog [name=key]", "igpt_not-the-right-key")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('#auth-dialog').open && !document.querySelector('#auth-dialog .auth-error').hidden"
        )
        assert page.inner_text("#auth-dialog .auth-error")  # the server's reason
        page.fill("#auth-dialog [name=key]", KEY)
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-ready='1']")
        assert page.evaluate("sessionStorage.getItem('igpt.key')") == KEY
        cookies = {c["name"]: c for c in context.cookies(keyed_server.url)}
        assert cookies["igpt_key"]["value"] == KEY and cookies["igpt_key"]["sameSite"] == "Strict"

        open_image(page, "dog_on_bench.png")  # the stage's <img> loaded with the cookie
        page.wait_for_function("document.querySelector('.strip .thumb img').naturalWidth === 512")
        with page.expect_request(lambda r: r.url.endswith("/api/tools")) as request:
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
        assert request.value.headers.get("authorization") == f"Bearer {KEY}"
        assert not page.evaluate("document.querySelector('#auth-dialog').open")  # kept for the tab
    finally:
        context.close()

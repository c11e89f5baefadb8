"""Click-and-remove on the embedded tier in a real browser: a click on the dog of
dog_on_bench selects the dog (learned HED edges and regions, the ``hed`` segment backend),
"remove it" fills it, and the bench around the dog is kept pixel for pixel."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from igpt_server import media
from igpt_server.perception import geometry
from tests.e2e.live import LiveServer
from tests.e2e.pages import DATA, TURN_TIMEOUT_MS, open_image, select_dog, send, server_session, wait_idle

pytestmark = pytest.mark.e2e

BENCH = (slice(200, 420), slice(30, 460))  # the bench's backrest, seat and legs
TAIL = (slice(395, 440), slice(225, 255))  # the dog's tail below the seat


def artifact_pixels(server: LiveServer, session: str, path: str, mode: str) -> np.ndarray:
    content = httpx.get(f"{server.url}/api/sessions/{session}/files/{path}").content
    return np.asarray(Image.open(BytesIO(content)).convert(mode))


def test_a_click_selects_the_dog_and_remove_keeps_the_bench(page: Any, live_server: LiveServer, shot: Any) -> None:
    first = open_image(page, "dog_on_bench.png")
    tools = {t["name"]: t for t in httpx.get(f"{live_server.url}/api/tools").json()}
    assert tools["segment"]["backend"] == "hed", tools["segment"]

    body = select_dog(page)
    assert body["gesture"]["type"] == "click"
    session = page.evaluate("window.igpt.state.session")
    state = server_session(live_server, page)
    mask = artifact_pixels(live_server, session, state["active_mask"], "L") > 127
    dog = media.read_mask(DATA / "dog_on_bench_mask.png")
    assert mask[TAIL].mean() > 0.5  # with its tail
    assert (mask & ~geometry.dilate(dog, 4)).sum() < 0.03 * mask.sum()  # without the bench
    shot(page, "click-remove-1-selected")

    send(page, "remove it")
    page.wait_for_function(
        "(before) => window.igpt.state.turn === null && window.igpt.state.image.path !== before "
        "&& window.igpt.state.shown.image === window.igpt.state.image.path",
        arg=first,
        timeout=TURN_TIMEOUT_MS,
    )
    wait_idle(page)
    shot(page, "click-remove-2-removed")
    result = server_session(live_server, page)["active_image"]
    assert result != first
    before = media.read_image_rgb(DATA / "dog_on_bench.png").astype(int)
    after = artifact_pixels(live_server, session, result, "RGB").astype(int)
    changed = np.abs(after - before).max(axis=-1) > 0
    assert changed[dog].mean() > 0.6 and changed[TAIL].mean() > 0.5  # the dog and its tail are gone
    bench = np.zeros(dog.shape, bool)
    bench[BENCH] = True
    bench &= ~geometry.dilate(dog, 14)  # the bench around the dog, past the fill's edge band
    assert not changed[bench].any()

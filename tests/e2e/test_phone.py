"""The canvas page on a phone (390x844, touch events) against a live server.

The canvas sits on top, the message box stays on screen, the toolbar shows its labels; a tap
selects, a long press leaves a part out, two fingers pan, and the Erase button works by tap.
Screenshots go to test-output/e2e/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.live import LiveServer
from tests.e2e.pages import DOG, client_point, open_image, server_session, wait_idle

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A page in a phone-sized, touch-enabled browser context."""
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20_000)
    page.goto(live_server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}"


def touch(page: Any, kind: str, points: list[tuple[float, float]]) -> None:
    """One raw touch event through the DevTools protocol (several fingers at once; one
    protocol session per page, which keeps the touch sequence)."""
    cdp = getattr(page, "touch_cdp", None)
    if cdp is None:
        cdp = page.touch_cdp = page.context.new_cdp_session(page)
    fingers = [{"x": x, "y": y, "id": i + 1} for i, (x, y) in enumerate(points)]
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": fingers})


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not on screen"
    return dict(found)


def test_on_a_phone_the_canvas_is_on_top_and_the_message_box_always_on_screen(phone: Any, shot: Any) -> None:
    open_image(phone, "dog_on_bench.png")
    stage, composer, message = box(phone, "#stage"), box(phone, "#composer"), box(phone, "#input")
    assert stage["y"] + stage["height"] <= composer["y"] + 1  # the canvas above the message box
    assert message["y"] >= 0 and message["y"] + message["height"] <= PHONE["height"]
    assert composer["y"] + composer["height"] <= PHONE["height"] + 1
    assert stage["height"] >= 0.3 * PHONE["height"]  # a usable canvas, not a strip
    for label in ["Click", "Box", "Brush", "+ add", "Undo", "Redo", "Export", "Compare", "Help", "Tools", "New"]:
        assert phone.get_by_text(label, exact=True).first.is_visible(), label  # labelled tools
    assert phone.evaluate("document.scrollingElement.scrollHeight") <= PHONE["height"] + 1  # nothing below the fold
    shot(phone, "30-phone-layout")


def test_on_a_phone_tap_selects_long_press_leaves_out_two_fingers_pan_and_erase_works(
    phone: Any, live_server: LiveServer, shot: Any
) -> None:
    first = open_image(phone, "dog_on_bench.png")
    x, y = client_point(phone, *DOG)
    with phone.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        phone.touchscreen.tap(x, y)
    assert request.value.post_data_json["gesture"]["points"] == [{"x": DOG[0], "y": DOG[1], "label": 1}]
    phone.wait_for_function("window.igpt.state.shown.mask !== null", timeout=60_000)
    wait_idle(phone)
    shot(phone, "31-phone-selected")

    tail = client_point(phone, 250, 450)
    with phone.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        touch(phone, "touchStart", [tail])
        phone.wait_for_timeout(800)  # a long press
        touch(phone, "touchEnd", [])
    labels = [p["label"] for p in request.value.post_data_json["gesture"]["points"]]
    assert labels == [1, 0]  # the press left a part out of the tapped object
    wait_idle(phone)

    view = phone.evaluate("({...window.igpt.stage.view})")
    a, b = client_point(phone, 150, 150), client_point(phone, 350, 150)
    touch(phone, "touchStart", [a, b])
    for step in range(1, 9):
        touch(phone, "touchMove", [(a[0], a[1] + 6 * step), (b[0], b[1] + 6 * step)])
    touch(phone, "touchEnd", [])
    moved = phone.evaluate("({...window.igpt.stage.view})")
    assert moved["y"] - view["y"] == pytest.approx(48, abs=2) and moved["scale"] == pytest.approx(view["scale"])
    assert phone.evaluate("window.igpt.state.marks.gestures.length") == 1  # two fingers point at nothing

    erase = box(phone, "#action-erase")
    phone.touchscreen.tap(erase["x"] + erase["width"] / 2, erase["y"] + erase["height"] / 2)
    phone.wait_for_function(
        "(f) => window.igpt.state.busy === 0 && window.igpt.state.shown.image !== f", arg=first, timeout=120_000
    )
    state = server_session(live_server, phone)
    made = next(a for a in state["artifacts"] if a["path"] == state["active_image"])
    assert made["tool"] == "remove" and made["parent"] == first
    shot(phone, "32-phone-erased")

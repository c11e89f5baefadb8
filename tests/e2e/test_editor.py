"""The page as people use photo editors, in a real browser against a live server (embedded tier).

Erase in one step beside the selection, see a turn's progress and stop it (the server stops
too), export and compare, undo and redo through the server's history from the buttons, the
keyboard and the chat alike, select several objects and take one out, and see which tools
this server lacks before trying them. Screenshots go to test-output/e2e/.
"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.live import LiveServer
from tests.e2e.pages import (
    DATA,
    DOG,
    DOG_BODY,
    SKY,
    TURN_TIMEOUT_MS,
    canvas_pixel,
    client_point,
    open_image,
    select_dog,
    send,
    server_session,
    wait_idle,
)

pytestmark = pytest.mark.e2e

DOG_FILE = DATA / "dog_on_bench.png"


def active(page: Any) -> list[str | None]:
    """The page's active image and selection paths."""
    return list(
        page.evaluate("[window.igpt.state.image && window.igpt.state.image.path, window.igpt.state.shown.mask]")
    )


def mask_of(server: LiveServer, page: Any, path: str) -> np.ndarray:
    """A mask artifact of the page's session as HxW bool."""
    session = page.evaluate("window.igpt.state.session")
    data = httpx.get(f"{server.url}/api/sessions/{session}/files/{path}").content
    return np.asarray(Image.open(io.BytesIO(data)).convert("L")) > 127


def tools(server: LiveServer) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in httpx.get(f"{server.url}/api/tools").json()}


def wait_new_image(page: Any, before: str, timeout: float = 120_000) -> str:
    page.wait_for_function(
        "(before) => window.igpt.state.turn === null && window.igpt.state.busy === 0 && "
        "window.igpt.state.image.path !== before && window.igpt.state.shown.image === window.igpt.state.image.path",
        arg=before,
        timeout=timeout,
    )
    return str(page.evaluate("window.igpt.state.image.path"))


# ---- pure modules, run in the browser -------------------------------------------------------------


def test_progress_marks_and_components_are_described_and_counted_exactly(page: Any) -> None:
    out = page.evaluate(
        """async () => {
          const {describeProgress} = await import('/turn.js');
          const {describeMarks, withGesture, withExcludePoint, emptyMarks} = await import('/marks.js');
          const {Components, union, count} = await import('/selection.js');
          const click = (x) => ({type: 'click', points: [{x, y: 1, label: 1}]});
          const stroke = (n) => ({type: 'stroke', points: Array.from({length: n}, (_, i) => [i, i]), width: 4});
          let marks = withGesture(emptyMarks(), click(1), false);
          marks = withGesture(marks, click(2), true);
          const refined = withExcludePoint(marks, {x: 5, y: 5});
          let strokes = withGesture(emptyMarks(), stroke(5), false);
          strokes = withGesture(withGesture(strokes, stroke(4), true), stroke(4), true);
          const c = new Components();
          const a = Uint8Array.from([1, 1, 0, 0, 0, 0]);
          const ab = Uint8Array.from([1, 1, 1, 1, 0, 0]);
          const abRefined = Uint8Array.from([1, 1, 1, 0, 0, 0]);
          c.record('m1', a, null, 'new', 'click');
          const two = c.record('m2', ab, 'm1', 'add', 'box');
          const again = c.record('m3', abRefined, 'm2', 'refine', 'box');
          return {
            running: describeProgress(
              {stage: 'running', message: 'running remove (opencv)', tool: 'remove', percent: 42.4}),
            queued: describeProgress({stage: 'queued', message: '', position: 2}),
            loading: describeProgress({stage: 'loading', message: '', model: 'sd-inpaint'}),
            clicks: describeMarks(marks),
            refined: refined.marks.gestures[1].points.map((p) => p.label),
            strokes: describeMarks(strokes),
            twoAreas: two.map((x) => x.area),
            secondPixels: Array.from(two[1].pixels),
            refinedPixels: Array.from(again[1].pixels),
            union: Array.from(union(two.map((x) => x.pixels), 6)),
            count: count(ab),
          };
        }"""
    )
    assert out["running"] == "running remove (opencv) · 42 %"
    assert out["queued"] == "Waiting in line (#2)"
    assert out["loading"] == "Loading sd-inpaint"
    assert out["clicks"] == "2 clicks" and out["refined"] == [1, 0]
    assert out["strokes"] == "3 strokes · 13 points"
    assert out["twoAreas"] == [2, 2] and out["secondPixels"] == [0, 0, 1, 1, 0, 0]
    assert out["refinedPixels"] == [0, 0, 1, 0, 0, 0]  # the redrawn object, without the first one
    assert out["union"] == [1, 1, 1, 1, 0, 0] and out["count"] == 4


# ---- one-step actions ---------------------------------------------------------------------------


def test_a_click_and_erase_removes_the_dog_in_one_step(page: Any, live_server: LiveServer, shot: Any) -> None:
    first = open_image(page, "dog_on_bench.png")
    select_dog(page)
    page.wait_for_selector("#selection-bar:not([hidden])")
    shot(page, "20-selection-actions")

    with page.expect_request(lambda r: r.url.endswith("/api/tools/remove")) as request:
        page.click("#action-erase")
    body = request.value.post_data_json
    state = server_session(live_server, page)
    assert body["args"] == {"image_path": first, "mask_path": state["active_mask"]}

    result = wait_new_image(page, first)
    state = server_session(live_server, page)
    made = next(a for a in state["artifacts"] if a["path"] == result)
    assert made["tool"] == "remove" and made["parent"] == first
    step = page.locator(".log .step").last
    assert step.locator(".tool").inner_text() == "remove" and "chosen by you" in step.inner_text()
    assert page.locator(".log .msg.error").count() == 0
    assert state["active_mask"] is None
    shot(page, "21-erased")


def test_cut_out_crop_and_blur_background_are_one_click_each(page: Any, live_server: LiveServer, shot: Any) -> None:
    listed = tools(live_server)
    for tool in ("extract", "crop", "adjust"):
        if not listed.get(tool, {}).get("available"):
            pytest.skip(f"this server has no working {tool!r}: {listed.get(tool, {}).get('reason')}")
    first = open_image(page, "dog_on_bench.png")
    select_dog(page)
    mask = server_session(live_server, page)["active_mask"]

    with page.expect_response(lambda r: r.url.endswith("/api/tools/extract")) as answer:
        page.click("#action-cutout")
    assert answer.value.ok, answer.value.text()
    wait_idle(page)
    state = server_session(live_server, page)
    material = next(a for a in state["artifacts"] if a["tool"] == "extract")
    assert material["kind"] == "material" and material["path"] in state["materials"]

    with page.expect_request(lambda r: r.url.endswith("/api/tools/crop")) as request:
        page.click("#action-crop")
    assert request.value.post_data_json["args"] == {"image_path": first, "mask_path": mask}
    cropped = wait_new_image(page, first)
    made = next(a for a in server_session(live_server, page)["artifacts"] if a["path"] == cropped)
    assert made["tool"] == "crop" and made["width"] < 512 and made["height"] < 512
    shot(page, "28-cropped")

    page.click("#undo-btn")
    page.wait_for_function("(f) => window.igpt.state.shown.image === f && window.igpt.state.busy === 0", arg=first)
    if server_session(live_server, page)["active_mask"] is None:  # the server's undo of a tool call drops it
        select_dog(page)
    mask = server_session(live_server, page)["active_mask"]
    with page.expect_request(lambda r: r.url.endswith("/api/tools/adjust")) as request:
        page.click("#action-blur")
    assert request.value.post_data_json["args"] == {
        "image_path": first,
        "mask_path": mask,
        "effect": "blur",
        "region": "background",
    }
    blurred = wait_new_image(page, first)
    made = next(a for a in server_session(live_server, page)["artifacts"] if a["path"] == blurred)
    assert made["tool"] == "adjust" and (made["width"], made["height"]) == (512, 512)
    assert page.locator(".log .msg.error").count() == 0
    shot(page, "29-blurred")


def test_delete_erases_the_selection_and_the_actions_say_what_this_server_lacks(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    listed = tools(live_server)
    first = open_image(page, "dog_on_bench.png")
    select_dog(page)
    for action, tool in [("erase", "remove"), ("cutout", "extract"), ("crop", "crop"), ("blur", "adjust")]:
        button = page.locator(f"#action-{action}")
        title = button.get_attribute("title") or ""
        if tool in listed and listed[tool]["available"]:
            assert "unavailable" not in (button.get_attribute("class") or ""), action
        else:
            reason = listed[tool]["reason"] if tool in listed else f"no '{tool}' tool"
            assert "unavailable" in (button.get_attribute("class") or "") and reason in title, (action, title)
    replace = listed.get("replace")
    assert page.locator("#action-replace").is_visible() == bool(replace and replace["available"])
    if not listed["generate"]["available"]:
        sketch_title = page.get_attribute("#sketch-mode", "title") or ""
        assert "full tier" in sketch_title and listed["generate"]["reason"] in sketch_title
        page.click("#sketch-mode")
        assert "full tier" in page.inner_text("#hint")
        page.click("[data-mode='click']")

    page.locator("#canvas").focus()
    with page.expect_request(lambda r: r.url.endswith("/api/tools/remove")):
        page.keyboard.press("Delete")
    wait_new_image(page, first)
    shot(page, "22-delete-erased")


def test_the_help_overlay_lists_the_modes_and_shortcuts(page: Any, shot: Any) -> None:
    page.keyboard.press("?")
    page.wait_for_selector("#help[open]")
    text = page.inner_text("#help")
    for needed in [
        "Click (C)",
        "Box (B)",
        "Sketch (S)",
        "long press",
        "Delete / Backspace",
        "Ctrl+Z",
        "Ctrl+Shift+Z",
        "Right click",
    ]:
        assert needed in text, needed
    shot(page, "23-help")
    page.keyboard.press("Escape")
    page.wait_for_selector("#help:not([open])", state="attached")


def test_right_click_on_the_canvas_is_left_to_the_browser(page: Any) -> None:
    open_image(page, "dog_on_bench.png")
    not_prevented = page.evaluate(
        "() => document.getElementById('canvas').dispatchEvent("
        "new MouseEvent('contextmenu', {bubbles: true, cancelable: true, button: 2}))"
    )
    assert not_prevented
    x, y = client_point(page, *DOG)
    page.mouse.click(x, y, button="right")
    page.wait_for_timeout(300)
    assert page.evaluate("window.igpt.state.marks.gestures.length") == 0  # no gesture either


# ---- several objects --------------------------------------------------------------------------------


def test_shift_click_adds_a_second_object_that_can_be_taken_out_again(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    image = open_image(page, "dog_on_bench.png")
    select_dog(page)
    dog_mask = server_session(live_server, page)["active_mask"]

    x, y = client_point(page, *SKY)
    with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        page.keyboard.down("Shift")
        page.mouse.click(x, y)
        page.keyboard.up("Shift")
    body = request.value.post_data_json
    assert body["add"] is True and body["gesture"]["points"] == [{"x": SKY[0], "y": SKY[1], "label": 1}]
    page.wait_for_function("(m) => window.igpt.state.shown.mask !== m", arg=dog_mask)
    wait_idle(page)
    both = server_session(live_server, page)["active_mask"]
    chips = page.locator("#components .component")
    assert chips.count() == 2
    assert "2 objects" in page.inner_text("#components") and "2 clicks" in page.inner_text("#context")
    shot(page, "24-two-objects")

    with page.expect_request(lambda r: r.url.endswith("/files") and r.method == "POST"):
        chips.nth(0).locator(".remove").click()  # take the dog out
    page.wait_for_function("(m) => window.igpt.state.shown.mask !== m", arg=both)
    wait_idle(page)
    state = server_session(live_server, page)
    sky_only = next(a for a in state["artifacts"] if a["path"] == state["active_mask"])
    assert sky_only["parent"] == image and state["active_image"] == image
    expected = mask_of(live_server, page, both) & ~mask_of(live_server, page, dog_mask)
    assert np.array_equal(mask_of(live_server, page, sky_only["path"]), expected)
    assert page.locator("#components .component").count() == 1


def test_the_add_mode_makes_a_box_another_object_and_the_chip_tells_every_stroke(page: Any) -> None:
    open_image(page, "dog_on_bench.png")
    select_dog(page)
    page.click("#add-btn")
    assert page.get_attribute("#add-btn", "aria-pressed") == "true"
    page.click("[data-mode='box']")
    with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        page.mouse.move(*client_point(page, 20, 20))
        page.mouse.down()
        page.mouse.move(*client_point(page, 120, 90), steps=6)
        page.mouse.up()
    assert request.value.post_data_json["add"] is True
    wait_idle(page)
    page.click("#add-btn")  # off again

    page.click("[data-mode='brush']")
    points = 0
    for i, (a, b) in enumerate([((30, 470), (90, 490)), ((400, 60), (470, 80)), ((440, 300), (500, 330))]):
        with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
            if i:
                page.keyboard.down("Shift")
            page.mouse.move(*client_point(page, *a))
            page.mouse.down()
            page.mouse.move(*client_point(page, *b), steps=8)
            page.mouse.up()
            if i:
                page.keyboard.up("Shift")
        sent = request.value.post_data_json
        assert sent["add"] is (i > 0)
        points += len(sent["gesture"]["points"])
        wait_idle(page)
    assert f"3 strokes · {points} points" in page.inner_text("#context")


# ---- export and compare ---------------------------------------------------------------------------


def download(page: Any, button: str) -> tuple[str, Image.Image]:
    page.click("#export-btn")
    with page.expect_download() as info:
        page.click(button)
    dl = info.value
    return dl.suggested_filename, Image.open(io.BytesIO(open(dl.path(), "rb").read()))


def test_the_image_the_selection_and_a_cut_out_download(page: Any, live_server: LiveServer) -> None:
    open_image(page, "dog_on_bench.png")
    select_dog(page)
    mask = mask_of(live_server, page, server_session(live_server, page)["active_mask"])

    name, png = download(page, "#export-png")
    assert name.endswith(".png") and png.format == "PNG" and png.size == (512, 512)
    original = np.asarray(Image.open(DOG_FILE).convert("RGB"))
    assert np.array_equal(np.asarray(png.convert("RGB")), original)
    name, jpeg = download(page, "#export-jpeg")
    assert name.endswith(".jpg") and jpeg.format == "JPEG" and jpeg.size == (512, 512)

    name, got = download(page, "#export-mask")
    assert name.endswith("_mask.png") and np.array_equal(np.asarray(got.convert("L")) > 127, mask)

    name, cut = download(page, "#export-cutout")
    ys, xs = np.nonzero(mask)
    assert name.endswith("_cutout.png") and cut.mode == "RGBA"
    assert cut.size == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    alpha = np.asarray(cut)[..., 3]
    inside = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert np.array_equal(alpha > 0, inside)  # transparent exactly outside the selection


def test_compare_shows_the_image_before_with_a_split_or_while_a_key_is_held(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    first = open_image(page, "dog_on_bench.png")
    before_pixel = canvas_pixel(page, *DOG_BODY)
    select_dog(page)
    page.click("#action-erase")
    wait_new_image(page, first)
    after_pixel = canvas_pixel(page, *DOG_BODY)
    assert after_pixel != before_pixel

    page.locator("#canvas").focus()
    page.keyboard.down("\\")
    page.wait_for_function("window.igpt.state.compare !== null")
    page.wait_for_timeout(100)
    assert canvas_pixel(page, *DOG_BODY) == before_pixel
    page.keyboard.up("\\")
    page.wait_for_function("window.igpt.state.compare === null")
    page.wait_for_timeout(100)
    assert canvas_pixel(page, *DOG_BODY) == after_pixel

    page.click("#compare-btn")
    page.wait_for_selector("#compare-split-group:not([hidden])")
    page.fill("#compare-split", "60")  # before on the left 60 % (x < 307 of 512)
    page.dispatch_event("#compare-split", "input")
    page.wait_for_timeout(100)
    assert canvas_pixel(page, *DOG_BODY) == before_pixel  # x 240: the before side
    right = (450.0, 300.0)
    page.click("#compare-btn")
    page.wait_for_timeout(100)
    expected_right = canvas_pixel(page, *right)
    page.click("#compare-btn")
    page.wait_for_timeout(100)
    assert canvas_pixel(page, *right) == expected_right  # the after side
    shot(page, "25-compare")


# ---- undo and redo ------------------------------------------------------------------------------------


def test_undo_and_redo_after_a_chat_turn_restore_the_image_and_the_selection(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    first = open_image(page, "dog_on_bench.png")
    select_dog(page)
    selection = server_session(live_server, page)["active_mask"]
    tinted = canvas_pixel(page, *DOG_BODY)

    send(page, "remove it")
    result = wait_new_image(page, first, timeout=TURN_TIMEOUT_MS)
    assert server_session(live_server, page)["active_image"] == result

    with page.expect_request(lambda r: r.url.endswith("/undo")):
        page.click("#undo-btn")
    page.wait_for_function("(f) => window.igpt.state.shown.image === f && window.igpt.state.busy === 0", arg=first)
    state = server_session(live_server, page)
    assert [state["active_image"], state["active_mask"]] == [first, selection]  # one step back, exactly
    assert active(page) == [first, selection]
    page.wait_for_timeout(100)
    assert canvas_pixel(page, *DOG_BODY) == tinted  # the selection is drawn again
    shot(page, "26-undone")

    page.locator("#input").focus()  # an empty message box: the shortcut still reaches the server
    with page.expect_request(lambda r: r.url.endswith("/redo")):
        page.keyboard.press("Control+Shift+Z")
    page.wait_for_function("(r) => window.igpt.state.shown.image === r && window.igpt.state.busy === 0", arg=result)
    assert server_session(live_server, page)["active_image"] == result

    # the chat's "undo" moves the same pointer as the buttons
    send(page, "undo")
    page.wait_for_function(
        "(f) => window.igpt.state.turn === null && window.igpt.state.shown.image === f",
        arg=first,
        timeout=TURN_TIMEOUT_MS,
    )
    assert server_session(live_server, page)["active_mask"] == selection
    with page.expect_request(lambda r: r.url.endswith("/redo")):
        page.click("#redo-btn")
    page.wait_for_function("(r) => window.igpt.state.shown.image === r && window.igpt.state.busy === 0", arg=result)


def test_ctrl_z_edits_the_text_while_the_message_box_holds_some(page: Any) -> None:
    open_image(page, "dog_on_bench.png")
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if r.url.endswith(("/undo", "/redo")) else None)
    page.locator("#input").focus()
    page.keyboard.type("remove")
    page.keyboard.press("Control+z")
    page.wait_for_timeout(300)
    assert calls == []
    assert page.input_value("#input") != "remove"  # the browser's own text undo


# ---- progress and Stop ---------------------------------------------------------------------------------


def test_a_turn_shows_its_progress_and_stop_cancels_it_on_the_server(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    image = open_image(page, "truck.jpg")
    page.click("#auto-select")  # the box goes with the message: the turn segments, then removes
    page.click("[data-mode='box']")
    page.mouse.move(*client_point(page, 150, 150))
    page.mouse.down()
    page.mouse.move(*client_point(page, 1650, 1050), steps=8)
    page.mouse.up()
    before = server_session(live_server, page)

    send(page, "remove it")
    page.wait_for_function("window.igpt.state.progress !== null", timeout=TURN_TIMEOUT_MS)
    assert page.is_visible("#stop-btn") and not page.is_visible("#send-btn")
    progress = page.evaluate("window.igpt.state.progress")
    assert progress["stage"] in ("queued", "loading", "running")
    assert progress["message"] in page.inner_text(".log .working") and progress["message"] in page.inner_text("#busy")
    shot(page, "27-progress")
    page.click("#stop-btn")
    page.wait_for_function("window.igpt.state.turn === null")
    assert "stopped" in page.locator(".log .msg.note").last.inner_text().lower()
    assert page.is_visible("#send-btn")

    # the server stopped too: once the turn lets go of the session, no image was made
    url = f"{live_server.url}/api/sessions/{before['id']}/active"
    deadline = time.monotonic() + 120
    while (answer := httpx.put(url, json={"image": image, "mask": None}, timeout=60)).status_code == 409:
        assert time.monotonic() < deadline, "the cancelled turn still holds the session after 120 s"
    assert answer.status_code == 200, answer.text
    after = answer.json()
    images = [a["path"] for a in after["artifacts"] if a["kind"] == "image"]
    assert images == [image]  # the turn ended before `remove` could make one
    assert not any(a["tool"] == "remove" for a in after["artifacts"])

"""The canvas page in a real browser against a live server (embedded tier).

Each test is a thing a person does on the page: open a photo, point at the dog, see the
selection, say "remove it", talk into the microphone, read text by pointing at it, drag an
object. Screenshots of each state go to test-output/e2e/.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.live import SPOKEN, LiveServer
from tests.e2e.pages import (
    DATA,
    DOG,
    DOG_BODY,
    SKY,
    TURN_TIMEOUT_MS,
    canvas_pixel,
    client_point,
    expected_image_point,
    open_image,
    select_dog,
    send,
    server_session,
    wait_idle,
)

pytestmark = pytest.mark.e2e


# ---- pure modules, run in the browser ----------------------------------------------------


def test_geometry_converts_display_to_image_pixels_exactly_at_any_zoom(page: Any) -> None:
    result = page.evaluate(
        """async () => {
          const g = await import('/geometry.js');
          const out = {roundTrip: 0, zoomFixed: 0};
          for (const scale of [0.05, 0.37, 1, 3.3, 17]) {
            const view = {scale, x: -123.4, y: 56.7};
            for (const [ix, iy] of [[0, 0], [511.5, 3.25], [1799, 1199], [0.125, 640.875]]) {
              const [dx, dy] = g.imageToDisplay(view, ix, iy);
              const [bx, by] = g.displayToImage(view, dx, dy);
              out.roundTrip = Math.max(out.roundTrip, Math.abs(bx - ix), Math.abs(by - iy));
              const zoomed = g.zoomAt(view, 2.5, dx, dy);
              const [zx, zy] = g.displayToImage(zoomed, dx, dy);
              out.zoomFixed = Math.max(out.zoomFixed, Math.abs(zx - ix), Math.abs(zy - iy));
            }
          }
          out.fit = g.fitView(1800, 1200, 1000, 800, 0);
          out.fitTall = g.fitView(512, 1024, 1000, 800, 20);
          out.box = g.boxGesture([300, 50], [-20, 400], 512, 256);
          out.thinBox = g.boxGesture([10, 10], [10.5, 90], 512, 256);
          const line = Array.from({length: 10000}, (_, i) => [i * 0.01, 5]);
          out.stroke = g.strokeGesture(line, 7.5, 0.5);
          out.bigStroke = g.strokeGesture(Array.from({length: 9000}, (_, i) => [i, i]), 3, 0.5, 4096);
          out.noInclude = g.clickGesture([{x: 1, y: 2, label: 0}]);
          out.click = g.clickGesture([{x: 1.5, y: 2.25, label: 1}, {x: 3, y: 4, label: 0}]);
          return out;
        }"""
    )
    assert result["roundTrip"] < 1e-9
    assert result["zoomFixed"] < 1e-9
    assert result["fit"] == {"scale": 1000 / 1800, "x": 0, "y": pytest.approx((800 - 1200 * 1000 / 1800) / 2)}
    assert result["fitTall"]["scale"] == pytest.approx(760 / 1024)
    assert result["box"] == {"type": "box", "x0": 0, "y0": 50, "x1": 300, "y1": 256}
    assert result["thinBox"] is None  # under one pixel wide: the server would refuse it
    stroke = result["stroke"]
    assert stroke["width"] == 7.5 and stroke["points"][0] == [0, 5]
    assert stroke["points"][-1] == pytest.approx([99.99, 5])
    steps = [b[0] - a[0] for a, b in zip(stroke["points"], stroke["points"][1:], strict=False)]
    assert min(steps[:-1]) >= 0.5 - 1e-9
    assert len(result["bigStroke"]["points"]) == 4096
    assert result["noInclude"] is None
    assert result["click"] == {
        "type": "click",
        "points": [{"x": 1.5, "y": 2.25, "label": 1}, {"x": 3, "y": 4, "label": 0}],
    }


def test_server_sent_events_are_parsed_however_the_stream_is_cut(page: Any) -> None:
    stream = (
        'event: step\ndata: {"tool": "segment", "args": {"x": 1}}\n\n'
        ": keep-alive\n\n"
        'event: token\r\ndata: {"text": "Re"}\r\n\r\n'
        'event: reply\ndata: {"reply": "two\\nlines"}\n\n'
        "event: done\ndata: {}\n\n"
    )
    events = page.evaluate(
        """async (stream) => {
          const {parseEvents} = await import('/sse.js');
          const runs = [];
          for (let cut = 0; cut <= stream.length; cut++) {
            let buffer = '', got = [];
            for (const chunk of [stream.slice(0, cut), stream.slice(cut)]) {
              const {events, rest} = parseEvents(buffer + chunk);
              buffer = rest; got = got.concat(events);
            }
            runs.push(JSON.stringify(got));
          }
          return runs;
        }""",
        stream,
    )
    expected = [
        {"event": "step", "data": {"tool": "segment", "args": {"x": 1}}},
        {"event": "token", "data": {"text": "Re"}},
        {"event": "reply", "data": {"reply": "two\nlines"}},
        {"event": "done", "data": {}},
    ]
    assert all(json.loads(run) == expected for run in events)


# ---- opening images ------------------------------------------------------------------------


def test_an_opened_image_fits_the_view_and_joins_the_strip(page: Any, shot: Any) -> None:
    shot(page, "00-empty")
    path = open_image(page, "dog_on_bench.png")

    view = page.evaluate(
        "(() => { const s = window.igpt.stage;"
        " return {v: s.view, w: s.cssW, h: s.cssH, size: s.size, i: s.insets}; })()"
    )
    scale, w = view["v"]["scale"], view["w"]
    h = view["h"] - view["i"]["top"] - view["i"]["bottom"]  # clear of the hint and the selection bar
    assert view["size"] == {"width": 512, "height": 512}
    assert 512 * scale <= min(w, h) and 512 * scale >= min(w, h) - 2 * 24 - 1  # fits, with the padding
    assert view["v"]["y"] >= view["i"]["top"] and view["v"]["y"] + 512 * scale <= view["h"] - view["i"]["bottom"]
    assert view["v"]["x"] == pytest.approx((w - 512 * scale) / 2)  # centred
    thumbs = page.locator(".strip .thumb")
    assert thumbs.count() == 1
    assert thumbs.first.get_attribute("data-path") == path
    assert "current" in (thumbs.first.get_attribute("class") or "")
    assert canvas_pixel(page, *SKY)[3] == 255  # the image is drawn
    shot(page, "01-opened")


def test_dropping_a_file_on_the_page_opens_it(page: Any) -> None:
    data = base64.b64encode((DATA / "truck.jpg").read_bytes()).decode()
    page.evaluate(
        """(b64) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], 'truck.jpg', {type: 'image/jpeg'}));
          const stage = document.getElementById('stage');
          stage.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true}));
          stage.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    page.wait_for_function("(window.igpt.state.shown.image || '').includes('truck')")
    assert page.evaluate("window.igpt.stage.size") == {"width": 1800, "height": 1200}


def test_a_reload_comes_back_to_the_same_session_image_and_selection(page: Any) -> None:
    image = open_image(page, "dog_on_bench.png")
    select_dog(page)
    session, mask = page.evaluate("[window.igpt.state.session, window.igpt.state.mask.path]")

    page.reload()
    page.wait_for_selector("body[data-ready='1']")

    page.wait_for_function("window.igpt.state.shown.mask !== null")
    assert page.evaluate("[window.igpt.state.session, window.igpt.state.image.path, window.igpt.state.mask.path]") == [
        session,
        image,
        mask,
    ]
    assert page.locator(".strip .thumb").count() == 1


def test_server_errors_are_shown_in_the_servers_own_words(page: Any, live_server: LiveServer, tmp_path: Path) -> None:
    fake = tmp_path / "broken.png"
    fake.write_bytes(b"this is not a picture at all")
    session = page.evaluate("window.igpt.state.session")
    with fake.open("rb") as fh:
        direct = httpx.post(f"{live_server.url}/api/sessions/{session}/files", files={"file": ("broken.png", fh)})
    assert direct.status_code in (400, 415, 422)
    message = direct.json()["error"]["message"]

    page.set_input_files("#file-input", str(fake))

    page.wait_for_selector(".toast.error")
    assert page.locator(".toast.error").first.inner_text() == message
    assert message in page.locator(".log .msg.error").last.inner_text()


# ---- pointing ------------------------------------------------------------------------------


def test_a_click_on_the_dog_selects_it_and_shows_the_overlay_at_once(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    image = open_image(page, "dog_on_bench.png")
    dog_before, sky_before = canvas_pixel(page, *DOG_BODY), canvas_pixel(page, *SKY)

    body = select_dog(page)

    assert body["intent"] == "select" and body["image"] == image and body["add"] is False
    (point,) = body["gesture"]["points"]
    assert body["gesture"]["type"] == "click" and point["label"] == 1
    assert (point["x"], point["y"]) == pytest.approx(DOG, abs=1e-6)
    state = server_session(live_server, page)
    mask = next(a for a in state["artifacts"] if a["path"] == state["active_mask"])
    assert state["active_image"] == image and mask["parent"] == image
    dog_after, sky_after = canvas_pixel(page, *DOG_BODY), canvas_pixel(page, *SKY)
    assert dog_after[2] - dog_after[0] > dog_before[2] - dog_before[0] + 40  # tinted sky blue
    assert sky_after == sky_before  # the rest of the picture is untouched
    assert "selection" in page.inner_text("#context")
    shot(page, "02-selected")


def test_clicks_convert_exactly_when_zoomed_and_panned(page: Any) -> None:
    open_image(page, "truck.jpg")
    page.mouse.move(*client_point(page, 900, 600))
    for _ in range(3):  # zoom in around the truck
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(50)
    page.click("[data-mode='pan']")
    start = client_point(page, 900, 600)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] - 150, start[1] + 60, steps=5)
    page.mouse.up()
    page.click("[data-mode='click']")
    scale = page.evaluate("window.igpt.stage.view.scale")
    assert scale > 1.0  # zoomed well past "fit"

    target = (431.0, 377.0)  # a client point: whatever image pixel lies under it
    expected = expected_image_point(page, *target)
    with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        page.mouse.click(*target)
    point = request.value.post_data_json["gesture"]["points"][0]

    assert (point["x"], point["y"]) == pytest.approx(expected, abs=1e-9)
    assert 0 <= point["x"] <= 1800 and 0 <= point["y"] <= 1200


def test_a_brush_stroke_is_sent_in_image_pixels_with_its_width(page: Any) -> None:
    open_image(page, "dog_on_bench.png")
    page.click("[data-mode='brush']")
    page.fill("#width", "30")  # screen pixels
    page.dispatch_event("#width", "input")
    scale = page.evaluate("window.igpt.stage.view.scale")
    a, b = client_point(page, 220, 250), client_point(page, 280, 300)
    with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        page.mouse.move(*a)
        page.mouse.down()
        page.mouse.move(*b, steps=12)
        page.mouse.up()
    gesture = request.value.post_data_json["gesture"]

    assert gesture["type"] == "stroke"
    assert gesture["width"] == pytest.approx(30 / scale)
    assert gesture["points"][0] == pytest.approx([220, 250], abs=1e-6)
    assert gesture["points"][-1] == pytest.approx([280, 300], abs=1e-6)


def test_an_alt_click_leaves_a_part_out_and_escape_clears(page: Any, live_server: LiveServer) -> None:
    open_image(page, "dog_on_bench.png")
    select_dog(page)
    first = server_session(live_server, page)["active_mask"]
    x, y = client_point(page, 250, 450)  # the tail: leave it out
    with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        page.keyboard.down("Alt")
        page.mouse.click(x, y)
        page.keyboard.up("Alt")
    body = request.value.post_data_json
    assert [p["label"] for p in body["gesture"]["points"]] == [1, 0]  # the same object, refined
    assert body["add"] is False
    wait_idle(page)
    refined = server_session(live_server, page)["active_mask"]
    assert refined is not None and refined != first

    page.keyboard.press("Escape")
    wait_idle(page)
    assert page.evaluate("window.igpt.state.marks.gestures.length") == 0
    assert server_session(live_server, page)["active_mask"] is None
    assert page.evaluate("window.igpt.state.shown.mask") is None


def test_a_tap_on_a_touch_screen_selects_like_a_click(browser: Any, live_server: LiveServer, shot: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        open_image(page, "dog_on_bench.png")
        x, y = client_point(page, *DOG)
        with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
            page.touchscreen.tap(x, y)
        point = request.value.post_data_json["gesture"]["points"][0]
        assert (point["x"], point["y"]) == pytest.approx(DOG, abs=1e-6) and point["label"] == 1
        page.wait_for_function("window.igpt.state.shown.mask !== null", timeout=60_000)
        shot(page, "09-touch-selected")
    finally:
        context.close()


def test_two_fingers_pinch_to_zoom_around_the_point_between_them(browser: Any, live_server: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 800}, has_touch=True)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        open_image(page, "dog_on_bench.png")
        scale_before = page.evaluate("window.igpt.stage.view.scale")
        cx, cy = client_point(page, 256, 256)
        cdp = context.new_cdp_session(page)

        def fingers(spread: float) -> list[dict[str, float]]:
            return [{"x": cx - spread, "y": cy, "id": 1}, {"x": cx + spread, "y": cy, "id": 2}]

        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": fingers(40)})
        for spread in range(50, 170, 10):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": fingers(spread)})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

        page.wait_for_function("(s) => window.igpt.stage.view.scale > 2 * s", arg=scale_before)
        x, y = expected_image_point(page, cx, cy)
        assert abs(x - 256) < 2 and abs(y - 256) < 2  # the pinched point stayed under the fingers
        assert page.evaluate("window.igpt.state.marks.gestures.length") == 0  # a pinch is not a click
    finally:
        context.close()


def test_sketch_strokes_are_stored_on_one_sketch_of_the_image(page: Any, live_server: LiveServer, shot: Any) -> None:
    image = open_image(page, "dog_on_bench.png")
    page.click("[data-mode='sketch']")
    bodies = []
    for stroke in ([(60, 450), (120, 380), (180, 450)], [(350, 80), (420, 60), (480, 90)]):
        with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
            page.mouse.move(*client_point(page, *stroke[0]))
            page.mouse.down()
            for point in stroke[1:]:
                page.mouse.move(*client_point(page, *point), steps=6)
            page.mouse.up()
        bodies.append(request.value.post_data_json)
        wait_idle(page)

    assert [b["intent"] for b in bodies] == ["sketch", "sketch"]
    assert [b["add"] for b in bodies] == [False, True]  # the second stroke draws on the first one's sketch
    assert bodies[0]["gesture"]["points"][0] == pytest.approx([60, 450], abs=1e-6)
    sketches = [a for a in server_session(live_server, page)["artifacts"] if a["kind"] == "sketch"]
    assert len(sketches) == 2 and all(a["parent"] == image for a in sketches)
    assert page.locator(".log .msg.error").count() == 0
    shot(page, "11-sketch")


# ---- without the LLM: OCR and move --------------------------------------------------------


def test_the_ocr_button_reads_the_text_in_a_box(page: Any, shot: Any) -> None:
    open_image(page, "unwant_text.jpg")
    page.click("#auto-select")  # only read, do not select
    page.click("[data-mode='box']")
    page.mouse.move(*client_point(page, 160, 30))
    page.mouse.down()
    page.mouse.move(*client_point(page, 600, 110), steps=8)
    page.mouse.up()
    with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        page.click("#ocr-btn")
    assert request.value.post_data_json["intent"] == "ocr"
    assert request.value.post_data_json["gesture"]["type"] == "box"

    note = page.locator(".log .msg.note").last
    note.wait_for(timeout=120_000)
    assert re.search(r"ELDEN\s*RING", note.inner_text(), re.IGNORECASE)
    shot(page, "07-ocr")


def test_dragging_the_selected_dog_moves_it_into_a_new_image(page: Any, live_server: LiveServer, shot: Any) -> None:
    first = open_image(page, "dog_on_bench.png")
    select_dog(page)
    page.click("[data-mode='move']")
    start = client_point(page, *DOG)
    end = client_point(page, DOG[0] + 120, DOG[1])
    with page.expect_request(lambda r: r.url.endswith("/gesture")) as request:
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=10)
        shot(page, "08a-dragging")
        page.mouse.up()
    body = request.value.post_data_json
    assert body["intent"] == "move" and body["gesture"]["type"] == "drag"
    assert body["gesture"]["start"] == pytest.approx(list(DOG), abs=1e-6)
    assert body["gesture"]["end"] == pytest.approx([DOG[0] + 120, DOG[1]], abs=1e-6)

    page.wait_for_function("(first) => window.igpt.state.image.path !== first", arg=first, timeout=120_000)
    state = server_session(live_server, page)
    moved = next(a for a in state["artifacts"] if a["path"] == state["active_image"])
    assert moved["tool"] == "move" and moved["parent"] == first
    assert page.locator(".strip .thumb").count() == 2
    shot(page, "08-moved")


# ---- chat and voice ------------------------------------------------------------------------


def test_remove_it_after_a_click_shows_a_new_image_and_the_tool_steps(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    first = open_image(page, "dog_on_bench.png")
    select_dog(page)

    send(page, "remove it")
    page.wait_for_selector(".log .working")
    shot(page, "03-turn-running")
    page.wait_for_function(
        "(first) => window.igpt.state.turn === null && window.igpt.state.image.path !== first",
        arg=first,
        timeout=TURN_TIMEOUT_MS,
    )

    steps = page.locator(".log .step")
    assert "remove" in [steps.nth(i).locator(".tool").inner_text() for i in range(steps.count())]
    assert page.locator(".log .msg.error").count() == 0
    state = server_session(live_server, page)
    result = next(a for a in state["artifacts"] if a["path"] == state["active_image"])
    assert result["tool"] == "remove"
    thumbs = page.locator(".strip .thumb")
    assert thumbs.count() == 2
    assert "← #1" in thumbs.nth(1).inner_text()  # its lineage
    assert canvas_pixel(page, *DOG_BODY) != canvas_pixel(page, *SKY)  # the new image is drawn
    shot(page, "04-removed")

    thumbs.first.click()  # back to the original
    page.wait_for_function("(first) => window.igpt.state.image.path === first", arg=first)
    assert server_session(live_server, page)["active_image"] == first


def test_a_voice_clip_is_transcribed_into_the_input_and_sent_as_a_turn(page: Any, shot: Any) -> None:
    open_image(page, "dog_on_bench.png")
    select_dog(page)
    mic = page.locator("#mic-btn")
    box = mic.bounding_box()
    assert box is not None
    with page.expect_response(lambda r: r.url.endswith("/speech")) as speech:
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()  # hold to talk
        page.wait_for_selector("#mic-btn.recording")
        page.wait_for_timeout(2500)
        shot(page, "05-recording")
        page.mouse.up()
    assert speech.value.ok, speech.value.text()
    text = speech.value.json()["text"]
    words = re.findall(r"[a-z]+", text.lower())
    assert words == re.findall(r"[a-z]+", SPOKEN.lower()), text

    user = page.locator(".log .msg.user").last
    user.wait_for()
    assert user.inner_text().startswith(text.strip())
    page.wait_for_function("window.igpt.state.turn === null", timeout=TURN_TIMEOUT_MS)
    answered = page.locator(".log .msg.assistant, .log .msg.error").count()
    assert answered >= 1
    shot(page, "06-voice-turn")


# ---- the tools panel -------------------------------------------------------------------------


def test_the_tools_panel_tells_what_works_here_and_why_the_rest_does_not(
    page: Any, live_server: LiveServer, shot: Any
) -> None:
    tools = httpx.get(f"{live_server.url}/api/tools").json()
    page.click("#tools-btn")
    page.wait_for_selector("#tools-panel[open]")

    available = sum(t["available"] for t in tools)
    assert page.inner_text("#tools-count") == f"{available}/{len(tools)}"
    for tool in tools:
        item = page.locator(f"#tool-list li[data-tool='{tool['name']}']")
        text = item.inner_text()
        if tool["available"]:
            assert f"backend: {tool['backend']}" in text
        else:
            assert "unavailable" in text and tool["reason"] in text
    shot(page, "10-tools")
    page.keyboard.press("Escape")
    page.wait_for_selector("#tools-panel:not([open])", state="attached")

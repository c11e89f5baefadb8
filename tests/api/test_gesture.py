"""POST /api/sessions/{id}/gesture: select, read, move and sketch by pointing, on real photos."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from igpt_server import media
from igpt_server.perception import geometry
from tests.helpers import DATA, make_client, new_session, upload

DOG = media.read_image_rgb(DATA / "dog_on_bench.png")
DOG_MASK = media.read_mask(DATA / "dog_on_bench_mask.png")
ON_THE_DOG = {"type": "click", "points": [{"x": 250, "y": 270, "label": 1}]}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, store_backend: str) -> Iterator[TestClient]:
    """One app for the module (EasyOCR loads once); embedded backends."""
    settings = {"backends": {"segment": "opencv", "remove": "opencv", "move": "opencv"}}
    with make_client(tmp_path_factory.mktemp("gesture") / "data", **settings) as c:
        yield c


def point(client: TestClient, sid: str, gesture: dict[str, Any], intent: str, **body: Any) -> Any:
    return client.post(f"/api/sessions/{sid}/gesture", json={"gesture": gesture, "intent": intent, **body})


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def pixels(client: TestClient, artifact: dict[str, Any], mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.get(artifact["url"]).content)).convert(mode))


def state(client: TestClient, sid: str) -> dict[str, Any]:
    result: dict[str, Any] = client.get(f"/api/sessions/{sid}").json()
    return result


# select -------------------------------------------------------------------------------------


def test_a_click_selects_the_dog_and_the_history_names_the_mask(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]

    body = ok(point(client, sid, ON_THE_DOG, "select"))

    assert body["intent"] == "select" and "Selected" in body["text"]
    (mask,) = body["artifacts"]
    assert mask["kind"] == "mask" and mask["parent"] == image and mask["tool"] == "segment"
    assert geometry.iou(pixels(client, mask, "L") > 127, DOG_MASK) > 0.5
    session = state(client, sid)
    assert session["active_mask"] == mask["path"] and session["active_image"] == image
    last = session["messages"][-1]
    assert last["role"] == "tool" and f"mask_path is {mask['path']}" in last["content"]
    assert last["data"]["tool"] == "segment" and last["data"]["intent"] == "select"
    assert last["data"]["artifacts"] == [mask["path"]]


def test_box_and_stroke_select_and_add_unites(client: TestClient) -> None:
    sid = new_session(client)
    upload(client, sid, "corgi.jpeg")
    head = ok(point(client, sid, {"type": "box", "x0": 465, "y0": 298, "x1": 660, "y1": 520}, "select"))
    first = pixels(client, head["artifacts"][0], "L") > 127
    tail = {"type": "stroke", "points": [[960, 420], [1010, 440]], "width": 10}

    body = ok(point(client, sid, tail, "select", add=True))

    both = pixels(client, body["artifacts"][0], "L") > 127
    assert (both & first).sum() == first.sum() and both[:, 900:].any()
    assert state(client, sid)["active_mask"] == body["artifacts"][0]["path"]


# ocr ---------------------------------------------------------------------------------------


def test_ocr_under_a_box_reads_the_title(client: TestClient) -> None:
    sid = new_session(client)
    upload(client, sid, "unwant_text.jpg")

    body = ok(point(client, sid, {"type": "box", "x0": 170, "y0": 35, "x1": 595, "y1": 105}, "ocr"))

    assert body["data"]["text"] == "ELDEN RING"
    assert "ELDEN RING" in body["text"] and body["artifacts"] == []
    assert state(client, sid)["messages"][-1]["data"]["tool"] == "ocr"


# move --------------------------------------------------------------------------------------


def test_dragging_the_selection_moves_the_dog(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
    drag = {"type": "drag", "start": [250, 270], "end": [170, 290]}

    body = ok(point(client, sid, drag, "move"))

    moved, selection = body["artifacts"]
    assert moved["kind"] == "image" and moved["parent"] == image and moved["tool"] == "move"
    assert selection["kind"] == "mask" and selection["parent"] == moved["path"]
    assert body["data"]["mask_path"] == mask
    after = pixels(client, moved)
    x0, y0, x1, y1 = 190, 120, 300, 350
    _, best, _, (bx, by) = cv2.minMaxLoc(cv2.matchTemplate(after, DOG[y0:y1, x0:x1], cv2.TM_CCOEFF_NORMED))
    assert best > 0.9 and (bx - x0, by - y0) == (-80, 20)
    new_mask = pixels(client, selection, "L") > 127
    (cx, cy), (ox, oy) = geometry.mask_centroid(new_mask), geometry.mask_centroid(DOG_MASK)  # type: ignore[misc]
    assert (cx - ox, cy - oy) == pytest.approx((-80, 20), abs=1.0)
    session = state(client, sid)
    assert (session["active_image"], session["active_mask"]) == (moved["path"], selection["path"])
    assert f"mask_path is {selection['path']}" in session["messages"][-1]["content"]


def test_dragging_an_unselected_object_selects_it_first(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "corgi.jpeg")["path"]
    drag = {"type": "drag", "start": [780, 470], "end": [700, 470]}

    body = ok(point(client, sid, drag, "move"))

    found, moved, selection = body["artifacts"]
    assert (found["kind"], found["parent"], found["tool"]) == ("mask", image, "segment")
    assert moved["parent"] == image and selection["parent"] == moved["path"]
    tools = [m["data"].get("tool") for m in state(client, sid)["messages"] if m["role"] == "tool"]
    assert tools == ["segment", "move"]


# sketch ------------------------------------------------------------------------------------


def test_strokes_become_a_sketch_and_add_draws_on_it(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    first = ok(point(client, sid, {"type": "stroke", "points": [[10, 10], [200, 10]], "width": 6}, "sketch"))
    (sketch,) = first["artifacts"]
    assert (
        sketch["kind"] == "sketch" and sketch["parent"] == image and (sketch["width"], sketch["height"]) == (512, 512)
    )

    second = ok(
        point(client, sid, {"type": "stroke", "points": [[10, 100], [10, 300]], "width": 6}, "sketch", add=True)
    )

    drawn = pixels(client, second["artifacts"][0], "L")
    assert drawn[10, 100] == 255 and drawn[200, 10] == 255 and drawn[400, 400] == 0
    assert set(np.unique(drawn)) <= {0, 255}


# bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dog_session(client: TestClient) -> str:
    sid = new_session(client)
    upload(client, sid, "dog_on_bench.png")
    return sid


@pytest.mark.parametrize(
    ("gesture", "intent", "code", "words"),
    [
        ({"type": "click", "points": [{"x": 600, "y": 10}]}, "select", "gesture_outside_image", "outside the 512x512"),
        ({"type": "stroke", "points": [], "width": 5}, "select", "validation_error", "points"),
        ({"type": "box", "x0": 10, "y0": 10, "x1": 10, "y1": 90}, "select", "validation_error", "no area"),
        ({"type": "click", "points": [{"x": 5, "y": 5, "label": 0}]}, "select", "validation_error", "include point"),
        ({"type": "click", "points": [{"x": 50, "y": 50}]}, "move", "wrong_gesture", "needs a drag"),
        ({"type": "box", "x0": 1, "y0": 1, "x1": 90, "y1": 90}, "sketch", "wrong_gesture", "needs a stroke"),
        ({"type": "drag", "start": [5, 5], "end": [50, 50]}, "select", "wrong_gesture", "a drag moves"),
        ({"type": "drag", "start": [5, 5], "end": [900, 50]}, "move", "gesture_outside_image", "outside"),
        ({"type": "click", "points": [{"x": 5, "y": 5}]}, "erase", "validation_error", "intent"),
    ],
)
def test_bad_gestures_are_422_with_a_reason(
    client: TestClient, dog_session: str, gesture: dict[str, Any], intent: str, code: str, words: str
) -> None:
    before = state(client, dog_session)

    response = point(client, dog_session, gesture, intent)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]
    after = state(client, dog_session)
    assert (after["artifacts"], after["messages"]) == (before["artifacts"], before["messages"])


def test_a_drag_on_nothing_is_422(client: TestClient, tmp_path: Any) -> None:
    sid = new_session(client)
    plain = tmp_path / "wall.png"
    plain.write_bytes(media.encode_png(np.full((120, 160, 3), 90, np.uint8)))
    with plain.open("rb") as fh:
        assert client.post(f"/api/sessions/{sid}/files", files={"file": ("wall.png", fh)}).status_code == 201

    response = point(client, sid, {"type": "drag", "start": [80, 60], "end": [100, 60]}, "move")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "nothing_to_move" and "select the object first" in error["message"]


def test_no_image_unknown_image_and_unknown_session(client: TestClient) -> None:
    sid = new_session(client)
    response = point(client, sid, ON_THE_DOG, "select")
    assert response.status_code == 422 and response.json()["error"]["code"] == "no_image"
    response = point(client, sid, ON_THE_DOG, "select", image="image/0badf00d_nope.png")
    assert response.status_code == 404
    assert point(client, "0" * 32, ON_THE_DOG, "select").status_code == 404
    assert point(client, sid, ON_THE_DOG, "select", extra=1).status_code == 422

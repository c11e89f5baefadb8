"""The segment tool on its embedded OpenCV backend (GrabCut seeded by the gesture).

Quality is checked on real photos against reference masks: dog_on_bench_mask.png (a loose
inpainting mask shipped with the photo) and the hand-drawn corgi polygon of
bench/data/reference_polygons.json. The thresholds sit below what bench/segment_quality.py
measures (bench/README.md), so they catch regressions, not noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from igpt_server import media
from igpt_server.perception import geometry
from igpt_server.perception.gestures import Box, Click, ClickPoint, Stroke
from igpt_tools.segment import OpenCvSegmentBackend, grabcut_segment
from tests.helpers import DATA, make_client, new_session, upload

POLYGONS = Path(__file__).resolve().parents[2] / "bench" / "data" / "reference_polygons.json"


def corgi_reference() -> np.ndarray:
    polygons = json.loads(POLYGONS.read_text())["corgi"]["polygons"]
    canvas = np.zeros((796, 1196), np.uint8)
    cv2.fillPoly(canvas, [np.asarray(p, np.int32) for p in polygons], 255)
    return canvas > 0


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("segment") / "data", backends={"segment": "opencv"}) as c:
        yield c


def segment(client: TestClient, session: str, **args: Any) -> Any:
    return client.post("/api/tools/segment", json={"session": session, "args": args})


def mask_of(client: TestClient, artifact: dict[str, Any]) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(client.get(artifact["url"]).content)).convert("L")) > 127


# the backend on real photos ---------------------------------------------------------------


def test_a_box_around_the_corgi_selects_the_corgi() -> None:
    image = media.read_image_rgb(DATA / "corgi.jpeg")
    mask = grabcut_segment(image, Box(x0=460, y0=295, x1=1050, y1=578))
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    assert geometry.iou(mask, corgi_reference()) > 0.85


def test_a_click_on_the_corgi_body_selects_the_corgi() -> None:
    image = media.read_image_rgb(DATA / "corgi.jpeg")
    mask = grabcut_segment(image, Click(points=[ClickPoint(x=780, y=470)]))
    assert geometry.iou(mask, corgi_reference()) > 0.8


def test_a_stroke_along_the_dog_selects_the_dog_not_the_bench() -> None:
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    reference = media.read_mask(DATA / "dog_on_bench_mask.png")
    mask = grabcut_segment(image, Stroke(points=[(255, 140), (252, 220), (250, 300), (240, 345)], width=14))
    assert geometry.iou(mask, reference) > 0.5
    assert (mask & ~reference).sum() < 0.25 * mask.sum()  # little of the bench or field


def test_the_backend_answers_the_segment_interface() -> None:
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    mask = OpenCvSegmentBackend().segment(None, "image/00000000_x.png", image, Box(x0=165, y0=100, x1=325, y1=480))  # type: ignore[arg-type]
    assert mask.shape == (512, 512) and mask.dtype == bool and 0.05 < mask.mean() < 0.2


def test_the_same_gesture_gives_the_same_mask() -> None:
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    click = Click(points=[ClickPoint(x=250, y=270)])
    assert (grabcut_segment(image, click) == grabcut_segment(image, click)).all()


def test_a_click_on_a_plain_wall_finds_no_object() -> None:
    plain = np.full((200, 300, 3), 128, np.uint8)
    assert not grabcut_segment(plain, Click(points=[ClickPoint(x=150, y=100)])).any()


# the tool through the API ---------------------------------------------------------------


def test_segment_makes_a_mask_of_the_image_that_becomes_the_selection(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    response = segment(
        client, sid, image_path=image, gesture={"type": "box", "x0": 165, "y0": 100, "x1": 325, "y1": 480}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "opencv"
    (mask,) = body["artifacts"]
    assert mask["kind"] == "mask" and mask["parent"] == image and (mask["width"], mask["height"]) == (512, 512)
    assert client.get(f"/api/sessions/{sid}").json()["active_mask"] == mask["path"]
    selected = mask_of(client, mask)
    assert geometry.iou(selected, media.read_mask(DATA / "dog_on_bench_mask.png")) > 0.6
    assert body["data"]["area"] == int(selected.sum())


def test_add_unites_with_the_selection(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "corgi.jpeg")["path"]
    head_box = {"type": "box", "x0": 465, "y0": 298, "x1": 660, "y1": 520}
    first = mask_of(client, segment(client, sid, image_path=image, gesture=head_box).json()["artifacts"][0])
    tail_box = {"type": "box", "x0": 880, "y0": 380, "x1": 1045, "y1": 575}
    response = segment(client, sid, image_path=image, gesture=tail_box, add=True)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["added"] is True
    both = mask_of(client, response.json()["artifacts"][0])
    assert (both & first).sum() == first.sum() and both.sum() > first.sum() * 1.3
    assert both[:, 880:].any() and not first[:, 880:].any()


def upload_png(client: TestClient, sid: str, pixels: np.ndarray, tmp_path: Path) -> str:
    file = tmp_path / "synthetic.png"
    file.write_bytes(media.encode_png(pixels))
    with file.open("rb") as fh:
        response = client.post(f"/api/sessions/{sid}/files", files={"file": ("synthetic.png", fh)})
    assert response.status_code == 201, response.text
    return str(response.json()["path"])


def test_an_exclude_click_takes_a_selected_object_out(client: TestClient, tmp_path: Path) -> None:
    picture = np.full((200, 300, 3), 200, np.uint8)
    picture[60:140, 40:120] = (200, 40, 40)  # a red square on the left
    picture[60:140, 180:260] = (40, 40, 200)  # a blue square on the right
    sid = new_session(client)
    image = upload_png(client, sid, picture, tmp_path)
    boxed = segment(client, sid, image_path=image, gesture={"type": "box", "x0": 20, "y0": 40, "x1": 280, "y1": 160})
    assert mask_of(client, boxed.json()["artifacts"][0])[[100, 100], [80, 220]].all()  # both squares

    click = {"type": "click", "points": [{"x": 80, "y": 100, "label": 1}, {"x": 220, "y": 100, "label": 0}]}
    response = segment(client, sid, image_path=image, gesture=click, add=True)

    assert response.status_code == 200, response.text
    kept = mask_of(client, response.json()["artifacts"][0])
    assert kept[65:135, 45:115].all() and not kept[:, 150:].any()


def test_segment_rejects_a_gesture_outside_the_image(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    response = segment(client, sid, image_path=image, gesture={"type": "click", "points": [{"x": 600, "y": 10}]})
    assert response.status_code == 422 and response.json()["error"]["code"] == "gesture_outside_image"
    assert client.get(f"/api/sessions/{sid}").json()["active_mask"] is None


def test_segment_says_when_nothing_is_found(client: TestClient, tmp_path: Path) -> None:
    sid = new_session(client)
    plain = tmp_path / "plain.png"
    plain.write_bytes(media.encode_png(np.full((120, 160, 3), 90, np.uint8)))
    with plain.open("rb") as fh:
        image = client.post(f"/api/sessions/{sid}/files", files={"file": ("plain.png", fh)}).json()["path"]
    response = segment(client, sid, image_path=image, gesture={"type": "click", "points": [{"x": 80, "y": 60}]})
    assert response.status_code == 422 and response.json()["error"]["code"] == "nothing_selected"
    assert [a["kind"] for a in client.get(f"/api/sessions/{sid}").json()["artifacts"]] == ["image"]


def test_exact_takes_the_brushed_area_itself(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "unwant_text.jpg")["path"]
    stroke = {"type": "stroke", "points": [[180, 70], [590, 70]], "width": 60}
    response = segment(client, sid, image_path=image, gesture=stroke, exact=True)
    assert response.status_code == 200, response.text
    mask = mask_of(client, response.json()["artifacts"][0])
    expected = geometry.rasterize_stroke(Stroke.model_validate(stroke), 429, 800)
    assert (mask == expected).all()


def test_exact_with_a_click_is_refused(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "unwant_text.jpg")["path"]
    click = {"type": "click", "points": [{"x": 300, "y": 70, "label": 1}]}
    response = segment(client, sid, image_path=image, gesture=click, exact=True)
    assert response.status_code == 422 and response.json()["error"]["code"] == "exact_needs_area"

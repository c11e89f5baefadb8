"""move, extract and compose on real photos, through the direct tool-call API."""

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
from tests.helpers import call_tool as call

DOG = media.read_image_rgb(DATA / "dog_on_bench.png")
DOG_MASK = media.read_mask(DATA / "dog_on_bench_mask.png")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("move") / "data", backends={"remove": "opencv", "move": "opencv"}) as c:
        yield c


@pytest.fixture(scope="module")
def dog(client: TestClient) -> tuple[str, str, str]:
    """A session with dog_on_bench.png and its mask as the selection."""
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
    return sid, image, mask


def pixels(client: TestClient, artifact: dict[str, Any], mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.get(artifact["url"]).content)).convert(mode))


def error_code(response: Any) -> str:
    assert response.status_code == 422, response.text
    return str(response.json()["error"]["code"])


# move -----------------------------------------------------------------------------------


def test_move_shifts_the_object_by_the_vector_and_fills_its_old_place(
    client: TestClient, dog: tuple[str, str, str]
) -> None:
    sid, image, mask = dog
    response = call(client, sid, "move", image_path=image, mask_path=mask, dx=-100, dy=10)

    assert response.status_code == 200, response.text
    body = response.json()
    moved, selection = body["artifacts"]
    assert moved["kind"] == "image" and moved["parent"] == image and moved["meta"]["moved"]["mask_path"] == mask
    # the moved object stays selected, as a mask of the new image
    assert selection["kind"] == "mask" and selection["parent"] == moved["path"]
    state = client.get(f"/api/sessions/{sid}").json()
    assert (state["active_image"], state["active_mask"]) == (moved["path"], selection["path"])
    (fx, fy), (tx, ty) = body["data"]["centre_from"], body["data"]["centre_to"]
    assert (tx - fx, ty - fy) == pytest.approx((-100, 10), abs=0.5)
    after = pixels(client, moved)
    # the dog's picture is found again 100 px left and 10 px down (template matching)
    x0, y0, x1, y1 = 190, 120, 300, 350  # the dog's head and body
    match = cv2.matchTemplate(after, DOG[y0:y1, x0:x1], cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(match)
    assert best > 0.9 and (bx - x0, by - y0) == (-100, 10)
    # where the dog sat and is no more, the picture changed
    left_behind = geometry.subtract(DOG_MASK, geometry.transform_mask(DOG_MASK, -100, 10))
    assert np.abs(after.astype(int) - DOG.astype(int))[left_behind].mean() > 40
    # far from both places nothing changed
    far = ~geometry.dilate(DOG_MASK | geometry.transform_mask(DOG_MASK, -100, 10), 30)
    assert np.abs(after.astype(int) - DOG.astype(int))[far].max() <= 2


def test_make_it_bigger_scales_about_the_centre(client: TestClient, dog: tuple[str, str, str]) -> None:
    sid, image, mask = dog
    response = call(client, sid, "move", image_path=image, mask_path=mask, scale=1.3)

    assert response.status_code == 200, response.text
    x0, y0, x1, y1 = response.json()["data"]["moved_box"]
    ox0, oy0, ox1, oy1 = geometry.mask_bbox(DOG_MASK) or (0, 0, 0, 0)
    assert (x1 - x0) / (ox1 - ox0) == pytest.approx(1.3, abs=0.03)
    assert y1 - y0 > (oy1 - oy0) * 1.2  # taller too (clipped at the bottom edge)
    after = pixels(client, response.json()["artifacts"][0])
    assert after.shape == DOG.shape and np.abs(after.astype(int) - DOG.astype(int)).mean() > 3


def test_move_defaults_to_the_selection_and_refuses_nonsense(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    assert error_code(call(client, sid, "move", image_path=image, dx=10)) == "no_selection"
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
    assert error_code(call(client, sid, "move", image_path=image, dx=0, dy=0)) == "no_move"
    assert error_code(call(client, sid, "move", image_path=image, dx=5000)) == "moved_outside"
    truck = upload(client, sid, "truck.jpg")["path"]
    assert error_code(call(client, sid, "move", image_path=truck, mask_path=mask, dx=10)) == "mask_size_mismatch"
    assert error_code(call(client, sid, "move", image_path=image, dx=10, scale=0)) == "invalid_input"
    kinds = [a["tool"] for a in client.get(f"/api/sessions/{sid}").json()["artifacts"]]
    assert "move" not in kinds  # a failed tool leaves the session as it was


# extract and compose ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cutout(client: TestClient, dog: tuple[str, str, str]) -> dict[str, Any]:
    sid, image, mask = dog
    response = call(client, sid, "extract", image_path=image, mask_path=mask)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["artifacts"][0]
    return result


def test_extract_cuts_the_selection_out_to_its_box(
    client: TestClient, dog: tuple[str, str, str], cutout: dict[str, Any]
) -> None:
    sid, image, _ = dog
    x0, y0, x1, y1 = geometry.mask_bbox(DOG_MASK) or (0, 0, 0, 0)
    assert cutout["kind"] == "material" and cutout["parent"] == image
    assert (cutout["width"], cutout["height"]) == (x1 - x0, y1 - y0)
    rgba = pixels(client, cutout, "RGBA")
    inside = DOG_MASK[y0:y1, x0:x1]
    assert (rgba[:, :, 3][inside] == 255).all() and (rgba[:, :, 3][~inside] == 0).all()
    assert (rgba[:, :, :3][inside] == DOG[y0:y1, x0:x1][inside]).all()
    assert cutout["path"] in client.get(f"/api/sessions/{sid}").json()["materials"]


def test_compose_on_a_blank_canvas_handles_a_material_hanging_over_the_edge(
    client: TestClient, dog: tuple[str, str, str], cutout: dict[str, Any]
) -> None:
    sid, _, _ = dog
    placement = {"material_path": cutout["path"], "x": 50, "y": -100, "scale": 0.5}
    response = call(client, sid, "compose", materials=[placement], width=400, height=300)

    assert response.status_code == 200, response.text
    (result,) = response.json()["artifacts"]
    assert (result["width"], result["height"]) == (400, 300) and result["parent"] == cutout["path"]
    out = pixels(client, result).astype(int)
    rgba = pixels(client, cutout, "RGBA")
    half = cv2.resize(rgba, (round(rgba.shape[1] * 0.5), round(rgba.shape[0] * 0.5)), interpolation=cv2.INTER_AREA)
    opaque = cv2.erode((half[:, :, 3] == 255).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    visible = opaque[100:]  # rows above the canvas are dropped
    region = out[0 : half.shape[0] - 100, 50 : 50 + half.shape[1]]
    assert np.abs(region[visible] - half[100:, :, :3][visible].astype(int)).max() <= 3
    assert (out[:, 300:] == 255).all()  # the rest stays white


def test_compose_seamlessly_on_a_photo_changes_only_around_the_material(
    client: TestClient, dog: tuple[str, str, str], cutout: dict[str, Any]
) -> None:
    sid, image, _ = dog
    placement = {"material_path": cutout["path"], "x": 420, "y": 300, "scale": 0.4}
    response = call(client, sid, "compose", materials=[placement], image_path=image, blend="seamless")

    assert response.status_code == 200, response.text
    out = pixels(client, response.json()["artifacts"][0]).astype(int)
    changed = np.abs(out - DOG.astype(int)).max(axis=2) > 0
    assert changed[300:460, 420:512].mean() > 0.3
    assert not changed[:290, :].any() and not changed[:, :410].any()


def test_compose_refuses_bad_placements(client: TestClient, dog: tuple[str, str, str], cutout: dict[str, Any]) -> None:
    sid, image, mask = dog
    far = {"material_path": cutout["path"], "x": 5000, "y": 0}
    assert error_code(call(client, sid, "compose", materials=[far], width=100, height=100)) == "outside_canvas"
    both = call(
        client, sid, "compose", materials=[{"material_path": cutout["path"]}], image_path=image, width=9, height=9
    )
    assert error_code(both) == "invalid_input" and "not both" in both.json()["error"]["message"]
    not_material = call(client, sid, "compose", materials=[{"material_path": mask}], width=50, height=50)
    assert error_code(not_material) == "invalid_input" and "material" in not_material.json()["error"]["message"]

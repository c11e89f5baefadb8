"""The crop tool: the selection's bounding box plus a margin becomes the new active image,
and the selection survives as a mask of the cropped image."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from igpt_server import media
from igpt_server.perception import geometry
from igpt_server.store import ArtifactKind
from igpt_tools.crop import crop_box
from tests.helpers import DATA, dog_session, make_client, new_session, upload
from tests.helpers import fetch_array as fetch

DOG = media.read_mask(DATA / "dog_on_bench_mask.png")
PHOTO = media.read_image_rgb(DATA / "dog_on_bench.png")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("crop") / "data") as c:
        yield c


def upload_array(client: TestClient, sid: str, array: np.ndarray, **form: str) -> dict[str, Any]:
    response = client.post(f"/api/sessions/{sid}/files", files={"file": ("a.png", media.encode_png(array))}, data=form)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def stored_empty_mask(client: TestClient, sid: str, image: str, height: int, width: int) -> str:
    """An empty mask of ``image`` put straight into the store: the upload route refuses empty
    masks, so this is how a tool's own check is reached."""
    store = client.app.state.services.store  # type: ignore[attr-defined]
    empty = np.zeros((height, width), bool)
    artifact = store.add_artifact(
        sid, ArtifactKind.mask, media.encode_png(empty), ext="png", parent=image, width=width, height=height
    )
    return str(artifact.path)


def crop(client: TestClient, sid: str, **args: Any) -> Any:
    return client.post("/api/tools/crop", json={"session": sid, "args": args})


def test_crop_to_the_dog_keeps_its_pixels_and_its_selection(client: TestClient) -> None:
    sid, image, mask = dog_session(client)

    response = crop(client, sid, image_path=image, mask_path=mask, margin=0.1)

    assert response.status_code == 200, response.text
    body = response.json()
    cropped, selection = body["artifacts"]
    x0, y0, x1, y1 = body["data"]["box"]
    dx0, dy0, dx1, dy1 = geometry.mask_bbox(DOG)  # type: ignore[misc]
    pad = 0.1 * max(dx1 - dx0, dy1 - dy0)
    # the dog's box grown by 10 % of its longer side on each side, clipped to the 512x512 photo
    assert (x0, y0) == (max(int(np.floor(dx0 - pad)), 0), max(int(np.floor(dy0 - pad)), 0))
    assert (x1, y1) == (min(int(np.ceil(dx1 + pad)), 512), min(int(np.ceil(dy1 + pad)), 512))
    assert (cropped["width"], cropped["height"]) == (x1 - x0, y1 - y0) < (512, 512)
    assert cropped["kind"] == "image" and cropped["parent"] == image and cropped["tool"] == "crop"
    assert (fetch(client, cropped) == PHOTO[y0:y1, x0:x1]).all()
    # the whole dog is inside, and still selected, on the new image
    assert selection["kind"] == "mask" and selection["parent"] == cropped["path"]
    assert (fetch(client, selection) > 127).sum() == DOG.sum()
    assert ((fetch(client, selection) > 127) == DOG[y0:y1, x0:x1]).all()
    state = client.get(f"/api/sessions/{sid}").json()
    assert (state["active_image"], state["active_mask"]) == (cropped["path"], selection["path"])
    assert "/" not in body["text"]  # no artifact paths in the text people read


def test_without_mask_path_the_active_selection_is_cropped_to(client: TestClient) -> None:
    sid, image, mask = dog_session(client)  # the uploaded mask is the active selection

    tight = crop(client, sid, image_path=image, margin=0)

    assert tight.status_code == 200, tight.text
    assert tight.json()["data"]["mask_path"] == mask
    assert tuple(tight.json()["data"]["box"]) == geometry.mask_bbox(DOG)


def test_aspect_square_widens_the_short_side_and_keeps_the_dog(client: TestClient) -> None:
    sid, image, mask = dog_session(client)

    response = crop(client, sid, image_path=image, mask_path=mask, margin=0, aspect="1:1")

    assert response.status_code == 200, response.text
    x0, y0, x1, y1 = response.json()["data"]["box"]
    dx0, dy0, dx1, dy1 = geometry.mask_bbox(DOG)  # type: ignore[misc]
    assert abs((x1 - x0) - (y1 - y0)) <= 1 and response.json()["data"]["aspect_met"] is True
    assert x0 <= dx0 and y0 <= dy0 and x1 >= dx1 and y1 >= dy1


def test_an_aspect_the_image_cannot_hold_keeps_the_whole_selection_and_says_so() -> None:
    # the dog is taller than wide; 10:1 would need a box 10 times wider than the photo
    (x0, y0, x1, y1), met = crop_box(DOG, 0.0, 10.0)
    _, dy0, _, dy1 = geometry.mask_bbox(DOG)  # type: ignore[misc]
    assert not met
    assert (x0, x1) == (0, 512) and y0 <= dy0 and y1 >= dy1


def test_crop_refuses_a_mask_of_another_image(client: TestClient) -> None:
    sid, _, mask = dog_session(client)
    truck = upload(client, sid, "truck.jpg")["path"]

    response = crop(client, sid, image_path=truck, mask_path=mask)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "mask_size_mismatch"
    assert client.get(f"/api/sessions/{sid}").json()["active_image"] == truck


def test_crop_refuses_an_empty_selection_and_no_selection(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]

    nothing = crop(client, sid, image_path=image)
    empty = stored_empty_mask(client, sid, image, 512, 512)
    empty_crop = crop(client, sid, image_path=image, mask_path=empty)

    assert nothing.status_code == 422 and nothing.json()["error"]["code"] == "no_selection"
    assert "select it first" in nothing.json()["error"]["message"]
    assert empty_crop.status_code == 422 and empty_crop.json()["error"]["code"] == "empty_mask"
    assert "select an object first" in empty_crop.json()["error"]["message"]


def test_a_one_pixel_image_crops_to_itself(client: TestClient) -> None:
    sid = new_session(client)
    pixel = upload_array(client, sid, np.full((1, 1, 3), 200, np.uint8))["path"]
    mask = upload_array(client, sid, np.ones((1, 1), bool), kind="mask", parent=pixel)["path"]

    response = crop(client, sid, image_path=pixel, mask_path=mask, margin=0.5, aspect=2)

    assert response.status_code == 200, response.text
    assert response.json()["data"]["box"] == [0, 0, 1, 1]
    assert (response.json()["artifacts"][0]["width"], response.json()["artifacts"][0]["height"]) == (1, 1)


def test_margin_and_aspect_are_validated(client: TestClient) -> None:
    sid, image, mask = dog_session(client)

    negative = crop(client, sid, image_path=image, mask_path=mask, margin=-1)
    nonsense = crop(client, sid, image_path=image, mask_path=mask, aspect="wide")

    assert negative.status_code == 422 and nonsense.status_code == 422

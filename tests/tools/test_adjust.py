"""The adjust tool: an effect on the selection or on the background, feathered inside the
region's border, the other side untouched, the selection kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from igpt_server import media
from igpt_server.perception import geometry
from igpt_tools.adjust import adjust
from tests.helpers import DATA, dog_session, make_client, new_session, upload
from tests.helpers import fetch_array as fetch

DOG = media.read_mask(DATA / "dog_on_bench_mask.png")
PHOTO = media.read_image_rgb(DATA / "dog_on_bench.png")
#: background pixels well away from the dog (past the feather and the blur's reach)
FAR = ~geometry.dilate(DOG, 40)
#: dog pixels well inside it (past the feather)
CORE = ~geometry.dilate(~DOG, 12)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("adjust") / "data") as c:
        yield c


def run_adjust(client: TestClient, sid: str, **args: Any) -> Any:
    return client.post("/api/tools/adjust", json={"session": sid, "args": args})


def sharpness(image: np.ndarray, where: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_64F))[where].mean())


def test_blur_the_background_leaves_every_dog_pixel_as_it_was(client: TestClient) -> None:
    sid, image, mask = dog_session(client)

    response = run_adjust(client, sid, image_path=image, mask_path=mask, effect="blur", region="background")

    assert response.status_code == 200, response.text
    result, selection = response.json()["artifacts"]
    after = fetch(client, result)
    assert result["parent"] == image and (result["width"], result["height"]) == (512, 512)
    assert (after[DOG] == PHOTO[DOG]).all()
    # the grass and the bench lost their detail
    assert sharpness(after, FAR) < 0.35 * sharpness(PHOTO, FAR)
    # the dog is still selected, now on the new image
    assert selection["kind"] == "mask" and selection["parent"] == result["path"]
    assert ((fetch(client, selection) > 127) == DOG).all()
    state = client.get(f"/api/sessions/{sid}").json()
    assert (state["active_image"], state["active_mask"]) == (result["path"], selection["path"])


def test_the_blurred_background_takes_no_colour_from_the_dog() -> None:
    white, black = PHOTO.copy(), PHOTO.copy()
    white[DOG], black[DOG] = 255, 0

    on_white, on_black = (adjust(p, ~DOG, "blur", 1.0) for p in (white, black))

    # what the dog is made of does not leak into the blurred background around it...
    assert (on_white[~DOG] == on_black[~DOG]).all()
    # ...while a plain blur would carry it 20 px out
    plain_white, plain_black = (cv2.GaussianBlur(p, (0, 0), 12.8).astype(int) for p in (white, black))
    ring = geometry.dilate(DOG, 20) & ~DOG
    assert np.abs(plain_white - plain_black)[ring].mean() > 30


def test_the_edge_is_feathered_inside_the_region() -> None:
    after = adjust(PHOTO, ~DOG, "darken", 1.0).astype(float)
    before = PHOTO.astype(float)
    ratio = after.mean(axis=-1) / np.maximum(before.mean(axis=-1), 1)
    touching = geometry.dilate(DOG, 1) & ~DOG  # the first ring of background
    # full effect far away (factor 0.25), hardly any right at the border, untouched inside
    assert abs(np.median(ratio[FAR]) - 0.25) < 0.03
    assert np.median(ratio[touching]) > 0.9
    assert (after[DOG] == before[DOG]).all()


def test_desaturate_the_selection_greys_the_dog_and_nothing_else(client: TestClient) -> None:
    sid, image, mask = dog_session(client)
    colour = PHOTO[CORE].astype(int).max(axis=-1) - PHOTO[CORE].astype(int).min(axis=-1)

    response = run_adjust(client, sid, image_path=image, mask_path=mask, effect="desaturate", strength=1.0)

    assert response.status_code == 200, response.text
    after = fetch(client, response.json()["artifacts"][0]).astype(int)
    spread = after[CORE].max(axis=-1) - after[CORE].min(axis=-1)
    assert colour.mean() > 5 and spread.max() <= 1
    assert (after[~DOG] == PHOTO[~DOG]).all()


def test_darken_and_brighten_move_the_brightness_the_right_way(client: TestClient) -> None:
    sid, image, mask = dog_session(client)
    darker = run_adjust(client, sid, image_path=image, mask_path=mask, effect="darken", strength=0.5)
    brighter = run_adjust(client, sid, image_path=image, mask_path=mask, effect="brighten", strength=0.5)

    dark = fetch(client, darker.json()["artifacts"][0]).astype(float)
    bright = fetch(client, brighter.json()["artifacts"][0]).astype(float)
    before = PHOTO.astype(float)
    assert abs(dark[CORE].mean() / before[CORE].mean() - 0.625) < 0.02
    assert bright[CORE].mean() > before[CORE].mean() + 10
    assert (dark[~DOG] == before[~DOG]).all() and (bright[~DOG] == before[~DOG]).all()


def test_pixelate_makes_flat_blocks() -> None:
    after = adjust(PHOTO, np.ones(DOG.shape, bool), "pixelate", 1.0)
    block = round(0.04 * 512)
    tile = after[2 * block : 3 * block, 5 * block : 6 * block].reshape(-1, 3)
    assert (tile == tile[0]).all()
    assert not (after[: 3 * block, : 3 * block] == after[0, 0]).all()


def test_without_a_mask_the_whole_image_changes_and_nothing_stays_selected(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "truck.jpg")["path"]

    response = run_adjust(client, sid, image_path=image, effect="blur", strength=0.3)

    assert response.status_code == 200, response.text
    (result,) = response.json()["artifacts"]
    truck = media.read_image_rgb(DATA / "truck.jpg")
    after = fetch(client, result)
    everywhere = np.ones(truck.shape[:2], bool)
    assert sharpness(after, everywhere) < 0.5 * sharpness(truck, everywhere)
    assert "whole image" in response.json()["text"]


def test_bad_regions_are_refused_with_the_fix(client: TestClient) -> None:
    sid, image, _ = dog_session(client)
    everything = client.post(
        f"/api/sessions/{sid}/files",
        files={"file": ("all.png", media.encode_png(np.ones((512, 512), bool)))},
        data={"kind": "mask", "parent": image},
    ).json()["path"]
    truck = upload(client, sid, "truck.jpg")["path"]

    no_mask = run_adjust(client, sid, image_path=image, effect="blur", region="background")
    no_background = run_adjust(client, sid, image_path=image, mask_path=everything, effect="blur", region="background")
    wrong_size = run_adjust(client, sid, image_path=truck, mask_path=everything, effect="blur")
    no_strength = run_adjust(client, sid, image_path=image, effect="blur", strength=0)
    unknown = run_adjust(client, sid, image_path=image, effect="sharpen")

    assert no_mask.status_code == 422 and no_mask.json()["error"]["code"] == "no_selection"
    assert no_background.status_code == 422 and no_background.json()["error"]["code"] == "empty_background"
    assert wrong_size.status_code == 422 and wrong_size.json()["error"]["code"] == "mask_size_mismatch"
    assert no_strength.status_code == 422 and unknown.status_code == 422
    assert client.get(f"/api/sessions/{sid}").json()["active_image"] == truck

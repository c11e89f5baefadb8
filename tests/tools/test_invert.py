"""The invert_selection tool: the complement of the selection becomes the selection."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from igpt_server import media
from tests.helpers import DATA, dog_session, make_client, new_session, upload
from tests.helpers import call_tool as call
from tests.helpers import fetch_array as fetch
from tests.tools.test_crop import stored_empty_mask

DOG = media.read_mask(DATA / "dog_on_bench_mask.png")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("invert") / "data") as c:
        yield c


def test_everything_but_the_dog_becomes_the_selection_of_the_same_image(client: TestClient) -> None:
    sid, image, mask = dog_session(client)

    response = call(client, sid, "invert_selection", image_path=image, mask_path=mask)

    assert response.status_code == 200, response.text
    (inverse,) = response.json()["artifacts"]
    assert inverse["kind"] == "mask" and inverse["parent"] == image
    assert ((fetch(client, inverse) > 127) == ~DOG).all()
    state = client.get(f"/api/sessions/{sid}").json()
    assert (state["active_image"], state["active_mask"]) == (image, inverse["path"])
    assert response.json()["data"]["area"] == int((~DOG).sum())


def test_inverting_twice_gives_the_dog_back(client: TestClient) -> None:
    sid, image, mask = dog_session(client)
    once = call(client, sid, "invert_selection", image_path=image, mask_path=mask).json()["artifacts"][0]

    twice = call(client, sid, "invert_selection", image_path=image, mask_path=once["path"])

    assert ((fetch(client, twice.json()["artifacts"][0]) > 127) == DOG).all()


def test_an_effect_on_the_inverted_selection_equals_the_effect_on_the_background(client: TestClient) -> None:
    sid, image, mask = dog_session(client)
    inverse = call(client, sid, "invert_selection", image_path=image, mask_path=mask).json()["artifacts"][0]

    on_inverse = call(client, sid, "adjust", image_path=image, mask_path=inverse["path"], effect="desaturate")
    on_background = call(
        client, sid, "adjust", image_path=image, mask_path=mask, effect="desaturate", region="background"
    )

    first, second = (fetch(client, r.json()["artifacts"][0]) for r in (on_inverse, on_background))
    assert (first == second).all()
    assert not (first == media.read_image_rgb(DATA / "dog_on_bench.png")).all()


def test_a_selection_of_the_whole_image_has_no_complement(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    everything = client.post(
        f"/api/sessions/{sid}/files",
        files={"file": ("all.png", media.encode_png(np.ones((512, 512), bool)))},
        data={"kind": "mask", "parent": image},
    ).json()["path"]

    response = call(client, sid, "invert_selection", image_path=image, mask_path=everything)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "empty_complement" and "select the object" in error["message"]
    assert client.get(f"/api/sessions/{sid}").json()["active_mask"] == everything


def test_a_mask_of_another_image_or_an_empty_mask_is_refused(client: TestClient) -> None:
    sid, _, mask = dog_session(client)
    truck = upload(client, sid, "truck.jpg")["path"]
    empty = stored_empty_mask(client, sid, truck, 1200, 1800)

    wrong_size = call(client, sid, "invert_selection", image_path=truck, mask_path=mask)
    nothing = call(client, sid, "invert_selection", image_path=truck, mask_path=empty)
    missing = call(client, sid, "invert_selection", image_path=truck)

    assert wrong_size.status_code == 422 and wrong_size.json()["error"]["code"] == "mask_size_mismatch"
    assert nothing.status_code == 422 and nothing.json()["error"]["code"] == "empty_mask"
    assert missing.status_code == 422

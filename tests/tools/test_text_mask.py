"""The text_mask tool: OCR word quads, grown to cover the glyphs, become the selection; with
``remove`` they erase the text (checked by reading the result again with the real OCR)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from igpt_server import media
from igpt_server.perception import geometry
from igpt_tools.ocr import Word
from igpt_tools.text_mask import word_masks
from tests.helpers import call_tool as call
from tests.helpers import fetch_array as fetch
from tests.helpers import make_client, new_session, upload

#: where EasyOCR finds "ELDEN RING" in unwant_text.jpg (800x429), XYXY
TITLE = (172, 34, 596, 110)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("text_mask") / "data") as c:
        yield c


@pytest.fixture(scope="module")
def poster(client: TestClient) -> tuple[str, str]:
    sid = new_session(client)
    return sid, upload(client, sid, "unwant_text.jpg")["path"]


def test_the_title_is_selected_and_remove_erases_it(client: TestClient, poster: tuple[str, str]) -> None:
    sid, image = poster
    assert "ELDEN RING" in call(client, sid, "ocr", image_path=image).json()["text"].upper()

    selected = call(client, sid, "text_mask", image_path=image)

    assert selected.status_code == 200, selected.text
    body = selected.json()
    (mask_artifact,) = body["artifacts"]
    assert mask_artifact["kind"] == "mask" and mask_artifact["parent"] == image
    assert client.get(f"/api/sessions/{sid}").json()["active_mask"] == mask_artifact["path"]
    assert "ELDEN RING" in body["data"]["text"].upper()
    mask = fetch(client, mask_artifact) > 127
    x0, y0, x1, y1 = TITLE
    # the title's box is covered, with a margin for the glyphs' outlines, and little else is
    assert mask[y0:y1, x0:x1].all()
    assert mask[y0 - 6 : y1 + 6, x0:x1].all() and mask[y0:y1, x0 - 6 : x1 + 6].all()  # corners are round
    assert mask.sum() < 1.35 * (x1 - x0) * (y1 - y0) and not mask[200:, :].any()

    removed = call(client, sid, "remove", image_path=image, mask_path=mask_artifact["path"])

    assert removed.status_code == 200, removed.text
    cleaned = removed.json()["artifacts"][0]["path"]
    reread = call(client, sid, "ocr", image_path=cleaned).json()["text"].upper()
    assert "ELDEN" not in reread and "RING" not in reread


def test_pointing_keeps_only_the_text_it_touches(client: TestClient, poster: tuple[str, str]) -> None:
    sid, image = poster
    on_ring = {"type": "box", "x0": 420, "y0": 50, "x1": 480, "y1": 90}
    on_the_knight = {"type": "box", "x0": 300, "y0": 330, "x1": 380, "y1": 420}

    touched = call(client, sid, "text_mask", image_path=image, region=on_ring)
    missed = call(client, sid, "text_mask", image_path=image, region=on_the_knight)

    assert touched.status_code == 200, touched.text
    assert "RING" in touched.json()["data"]["text"].upper()  # a piece of text is kept whole
    assert missed.status_code == 422
    error = missed.json()["error"]
    assert error["code"] == "no_text" and "elsewhere" in error["message"] and "brush" in error["message"]


def test_an_image_without_text_says_what_to_try(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]

    response = call(client, sid, "text_mask", image_path=image)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "no_text" and "crop" in error["message"]
    assert client.get(f"/api/sessions/{sid}").json()["active_mask"] is None


def test_a_one_pixel_image_is_refused_before_ocr_runs(client: TestClient) -> None:
    sid = new_session(client)
    pixel = client.post(
        f"/api/sessions/{sid}/files", files={"file": ("p.png", media.encode_png(np.zeros((1, 1, 3), np.uint8)))}
    ).json()["path"]

    response = call(client, sid, "text_mask", image_path=pixel)

    assert response.status_code == 422 and response.json()["error"]["code"] == "image_too_small"


def test_a_mask_of_another_image_is_refused(client: TestClient, poster: tuple[str, str]) -> None:
    sid, image = poster
    dog = upload(client, sid, "dog_on_bench.png")["path"]
    dog_mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=dog)["path"]

    response = call(client, sid, "text_mask", image_path=image, mask_path=dog_mask)

    assert response.status_code == 422 and response.json()["error"]["code"] == "mask_size_mismatch"


def test_slanted_words_are_filled_as_rotated_quads_and_grown_by_their_height() -> None:
    # a word slanted by 45 degrees, 20 px tall, and a level one elsewhere
    slanted = Word(
        text="slant", box=(100, 100, 200, 200), confidence=0.9, quad=[(100, 180), (180, 100), (200, 120), (120, 200)]
    )
    level = Word(text="level", box=(10, 10, 60, 30), confidence=0.9, quad=[(10, 10), (60, 10), (60, 30), (10, 30)])
    height = float(np.hypot(20, 20))  # 28 px: the slanted word's side

    both, kept = word_masks([slanted, level], 240, 240)

    assert [w.text for w in kept] == ["slant", "level"]
    # the quad's centre and the grown border are in; the box corners it does not cover are out
    assert both[150, 150] and both[100, 180 - round(0.1 * height)]
    assert not both[102, 102] and not both[198, 198]
    assert both[10 - 2, 30] and not both[10 - 4, 30]  # level: grown by a tenth of 20 px

    region = np.zeros((240, 240), bool)
    region[140:160, 140:160] = True
    only, kept = word_masks([slanted, level], 240, 240, touching=region)
    assert [w.text for w in kept] == ["slant"] and not only[:40, :80].any()
    assert geometry.iou(only, both & ~geometry.box_mask((0, 0, 80, 45), 240, 240)) == 1.0

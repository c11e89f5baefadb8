"""The remove tool on its embedded backend: grow the mask, fill it by exemplar matching."""

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
from igpt_tools import patchfill
from igpt_tools.remove import fill_region
from tests.helpers import DATA, make_client, new_session, upload


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("remove") / "data", backends={"remove": "opencv"}) as c:
        yield c


def picture(client: TestClient, artifact: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.get(artifact["url"]).content)).convert("RGB"))


def test_remove_fills_the_dog_and_leaves_the_rest_untouched(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image["path"])

    response = client.post(
        "/api/tools/remove", json={"session": sid, "args": {"image_path": image["path"], "mask_path": mask["path"]}}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "opencv"
    (result,) = body["artifacts"]
    assert result["kind"] == "image" and result["parent"] == image["path"] and result["tool"] == "remove"
    assert (result["width"], result["height"]) == (512, 512)
    assert client.get(f"/api/sessions/{sid}").json()["active_image"] == result["path"]
    before = media.read_image_rgb(DATA / "dog_on_bench.png").astype(int)
    after = picture(client, result).astype(int)
    dog = media.read_mask(DATA / "dog_on_bench_mask.png")
    # the white dog is gone: the region changed a lot and is hardly white any more
    assert np.abs(after - before)[dog].mean() > 40
    white_before, white_after = ((a[dog].min(axis=-1) > 170).mean() for a in (before, after))
    assert white_before > 0.3 and white_after < 0.15
    # far from the mask nothing changed
    far = ~geometry.dilate(dog, 30)
    assert np.abs(after - before)[far].max() <= 2
    # the fill looks like its surroundings (colour close to the ring around the hole)
    ring = geometry.dilate(dog, 40) & ~geometry.dilate(dog, 16)
    assert np.abs(after[dog].mean(axis=0) - before[ring].mean(axis=0)).max() < 30


def test_remove_rejects_a_mask_of_another_size(client: TestClient) -> None:
    sid = new_session(client)
    dog = upload(client, sid, "dog_on_bench.png")["path"]
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=dog)["path"]
    truck = upload(client, sid, "truck.jpg")["path"]

    response = client.post("/api/tools/remove", json={"session": sid, "args": {"image_path": truck, "mask_path": mask}})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "mask_size_mismatch" and "512x512" in error["message"] and "1800x1200" in error["message"]
    assert client.get(f"/api/sessions/{sid}").json()["active_image"] == truck


def test_fill_continues_stripes_across_a_hole() -> None:
    rows = np.arange(120)[:, None, None]
    stripes = np.where((rows // 8) % 2 == 0, [200, 60, 30], [30, 90, 200]).astype(np.uint8)
    stripes = np.broadcast_to(stripes, (120, 160, 3)).copy()
    hole = np.zeros((120, 160), bool)
    hole[40:80, 60:100] = True
    damaged = stripes.copy()
    damaged[hole] = 0

    filled = patchfill.fill(damaged, hole)

    error = np.abs(filled.astype(int) - stripes.astype(int))[hole].mean()
    smeared = cv2.inpaint(damaged, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    assert error < 15
    assert error < 0.5 * np.abs(smeared.astype(int) - stripes.astype(int))[hole].mean()
    assert (filled[~hole] == damaged[~hole]).all()


def test_fill_works_on_a_crop_of_a_big_photo_only() -> None:
    truck = media.read_image_rgb(DATA / "truck.jpg")
    hole = np.zeros(truck.shape[:2], bool)
    hole[1000:1060, 300:380] = True  # a patch of road
    out = fill_region(truck, hole)
    assert out.shape == truck.shape and (out[~hole] == truck[~hole]).all()
    road = truck[950:1110, 250:430].reshape(-1, 3).mean(axis=0)
    assert np.abs(out[hole].mean(axis=0) - road).max() < 20


def test_remove_refuses_a_selection_of_almost_the_whole_image(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    everything = np.ones((512, 512), bool)
    everything[:20, :20] = False
    response = client.post(
        f"/api/sessions/{sid}/files",
        files={"file": ("all.png", media.encode_png(everything))},
        data={"kind": "mask", "parent": image},
    )
    assert response.status_code == 201, response.text

    removed = client.post(
        "/api/tools/remove", json={"session": sid, "args": {"image_path": image, "mask_path": response.json()["path"]}}
    )

    assert removed.status_code == 422
    assert (
        removed.json()["error"]["code"] == "mask_too_large" and "smaller object" in removed.json()["error"]["message"]
    )


def test_the_fill_reports_its_levels_and_stops_when_the_request_is_cancelled() -> None:
    import threading

    from igpt_server.tooling import progress

    photo = media.read_image_rgb(DATA / "dog_on_bench.png")
    hole = media.read_mask(DATA / "dog_on_bench_mask.png")
    seen: list[progress.Progress] = []
    with progress.tracking(seen.append, threading.Event()):
        patchfill.fill(photo, hole)
    percents = [p.percent for p in seen]
    assert len(seen) >= 2 and all(p.stage == "running" for p in seen)
    assert percents == sorted(percents) and percents[0] == 0 and all(0 <= p < 100 for p in percents if p is not None)

    stop = threading.Event()
    stop.set()
    with progress.tracking(seen.append, stop), pytest.raises(progress.Cancelled):
        patchfill.fill(photo, hole)

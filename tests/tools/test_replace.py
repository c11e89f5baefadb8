"""The replace tool through the REST API: Stable Diffusion inpainting with the user's prompt.

A tiny random-weight inpainting checkpoint in a temporary model directory stands in for
SD 1.5 inpainting; everything else (routes, runner, store, pool, crop and paste) is real.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from igpt_server.media import encode_png, read_image_rgb
from igpt_server.perception.geometry import box_mask, dilate
from igpt_server.store import ArtifactKind
from tests.helpers import DATA, make_client, new_session, upload
from tests.tools.tiny_sd import tiny_model_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture
def full(tmp_path: Path, model_dir: Path) -> Iterator[TestClient]:
    """A client of a server whose model directory holds the tiny checkpoints."""
    with make_client(tmp_path / "data", model_dir=model_dir, devices={"inpaint": "cpu"}) as c:
        yield c


def upload_mask(client: TestClient, session: str, image: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    response = client.post(
        f"/api/sessions/{session}/files",
        files={"file": ("mask.png", buffer.getvalue())},
        data={"kind": "mask", "parent": image["path"]},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def decode(client: TestClient, url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.get(url).content)).convert("RGB"))


def replace(client: TestClient, session: str, **args: Any) -> Any:
    return client.post("/api/tools/replace", json={"session": session, "args": args})


def test_replace_repaints_only_the_dilated_mask_at_full_resolution(full: TestClient) -> None:
    sid = new_session(full)
    image = upload(full, sid, "truck.jpg")
    mask = box_mask((600, 450, 1000, 800), image["height"], image["width"])
    selection = upload_mask(full, sid, image, mask)
    response = replace(
        full, sid, image_path=image["path"], mask_path=selection["path"], prompt="a red sofa", steps=3, seed=7
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "sd-inpaint" and body["data"]["seed"] == 7
    (made,) = body["artifacts"]
    assert made["kind"] == "image" and made["parent"] == image["path"]
    assert (made["width"], made["height"]) == (image["width"], image["height"])
    before, after = read_image_rgb(DATA / "truck.jpg"), decode(full, made["url"])
    grown = dilate(mask, body["data"]["dilation"])
    assert 8 <= body["data"]["dilation"] <= 15
    # a JPEG in gives a quality-93 JPEG out: outside the grown mask only re-encoding noise differs
    outside = np.abs(after.astype(int) - before.astype(int))[~grown]
    assert outside.mean() < 1.0 and np.percentile(outside, 99) <= 8
    assert not np.array_equal(after[mask], before[mask])
    assert full.get(f"/api/sessions/{sid}").json()["active_image"] == made["path"]


def test_same_seed_same_picture(full: TestClient) -> None:
    sid = new_session(full)
    image = upload(full, sid, "dog_on_bench.png")
    mask = upload(full, sid, "dog_on_bench_mask.png", kind="mask", parent=image["path"])
    args = {"image_path": image["path"], "mask_path": mask["path"], "prompt": "a monkey", "steps": 2, "seed": 11}
    first = replace(full, sid, **args).json()["artifacts"][0]
    second = replace(full, sid, **args).json()["artifacts"][0]
    assert np.array_equal(decode(full, first["url"]), decode(full, second["url"]))


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("x" * 10_000, "at most 1000 characters"), ("   ", "prompt is blank"), ("", "at least 1 character")],
)
def test_bad_prompts_are_422_and_change_nothing(full: TestClient, prompt: str, message: str) -> None:
    sid = new_session(full)
    image = upload(full, sid, "dog_on_bench.png")
    mask = upload(full, sid, "dog_on_bench_mask.png", kind="mask", parent=image["path"])
    response = replace(full, sid, image_path=image["path"], mask_path=mask["path"], prompt=prompt)
    assert response.status_code == 422 and message in response.json()["error"]["message"]
    assert len(full.get(f"/api/sessions/{sid}").json()["artifacts"]) == 2


def test_an_empty_mask_is_422(full: TestClient) -> None:
    sid = new_session(full)
    image = upload(full, sid, "dog_on_bench.png")
    store = full.app.state.services.store  # type: ignore[attr-defined]  # uploads refuse empty masks
    empty = store.add_artifact(
        sid, ArtifactKind.mask, encode_png(np.zeros((512, 512), bool)), ext="png", parent=image["path"]
    )
    response = replace(full, sid, image_path=image["path"], mask_path=empty.path, prompt="a cat")
    assert response.status_code == 422 and response.json()["error"]["code"] == "empty_mask"


def test_without_a_checkpoint_replace_says_what_to_configure(client: TestClient) -> None:
    info = next(t for t in client.get("/api/tools").json() if t["name"] == "replace")
    assert not info["available"] and "sd-inpaint" in info["reason"] and "IGPT_MODEL_DIR" in info["reason"]
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image["path"])
    response = replace(client, sid, image_path=image["path"], mask_path=mask["path"], prompt="a cat")
    assert response.status_code == 503 and response.json()["error"]["code"] == "tool_unavailable"


def test_the_model_pool_lists_the_inpainting_model(full: TestClient) -> None:
    info = next(t for t in full.get("/api/tools").json() if t["name"] == "replace")
    assert info["available"] and info["backend"] == "sd-inpaint"
    sid = new_session(full)
    image = upload(full, sid, "dog_on_bench.png")
    mask = upload(full, sid, "dog_on_bench_mask.png", kind="mask", parent=image["path"])
    assert replace(full, sid, image_path=image["path"], mask_path=mask["path"], prompt="a cat", steps=1).is_success
    models = {m["key"]: m for m in full.get("/api/models").json()}
    assert models["inpaint.sd"]["loaded"] and models["inpaint.sd"]["dtype"] == "fp32"
    assert models["inpaint.sd"]["device"] == "cpu" and models["inpaint.sd"]["memory_bytes"] > 0

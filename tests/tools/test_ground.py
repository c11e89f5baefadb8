"""Grounding (GroundingDINO) and ground_and_segment (GroundingDINO boxes -> SAM masks).

A tiny random GroundingDINO (Swin-T backbone, one encoder and decoder layer, a one-layer
BERT from a local folder) is saved like the released checkpoint; its boxes mean nothing,
so the backend is checked against groundingdino's own ``predict`` on the same model and
image tensor, and ground_and_segment against the SAM backend on the found boxes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from groundingdino.util.inference import predict

from igpt_server import media
from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.ground import (
    GroundingDinoBackend,
    find_grounding_files,
    input_tensor,
    normalise_query,
)
from igpt_tools.sam import SamSegmentBackend
from tests.helpers import DATA, make_client, new_session, upload
from tests.tiny_perception import tiny_grounding, tiny_sam


@pytest.fixture(scope="module")
def model_dir() -> Path:
    tiny_sam()
    return tiny_grounding()


def make_ctx(root: Path, model_dir: Path) -> StoreToolContext:
    settings = Settings(data_dir=root, model_dir=model_dir, devices={"ground": "cpu", "sam": "cpu"})
    store = SessionStore(settings.data_dir)
    return StoreToolContext(store.create().id, store, settings, ModelPool(settings))


def add_image(ctx: StoreToolContext, name: str) -> tuple[str, np.ndarray]:
    image = media.read_image_rgb(DATA / name)
    artifact = ctx.store.add_artifact(
        ctx.session_id,
        ArtifactKind.image,
        media.encode_png(image),
        ext="png",
        width=image.shape[1],
        height=image.shape[0],
    )
    return artifact.path, image


@pytest.fixture(scope="module")
def ctx(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> StoreToolContext:
    """One session and pool for the backend tests (each model loads once)."""
    return make_ctx(tmp_path_factory.mktemp("ground-ctx"), model_dir)


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("ground-api")
    with make_client(root, model_dir=model_dir, devices={"ground": "cpu", "sam": "cpu"}) as c:
        yield c


# configuration ------------------------------------------------------------------------------


def test_without_files_the_reason_names_what_and_where(tmp_path: Path) -> None:
    backend = GroundingDinoBackend()
    reason = backend.unavailable_reason(Settings(data_dir=tmp_path))
    assert reason is not None and "IGPT_MODEL_DIR" in reason and "groundingdino_swint_ogc.pth" in reason
    (tmp_path / "models" / "groundingdino").mkdir(parents=True)
    reason = backend.unavailable_reason(Settings(data_dir=tmp_path, model_dir=tmp_path / "models"))
    assert reason is not None and str(tmp_path / "models" / "groundingdino") in reason


def test_the_text_encoder_folder_is_required_and_named(tmp_path: Path) -> None:
    folder = tmp_path / "groundingdino"
    folder.mkdir()
    (folder / "groundingdino_swint_ogc.pth").write_bytes(b"")
    with pytest.raises(Exception, match="bert-base-uncased"):
        find_grounding_files(tmp_path)


def test_the_packaged_config_is_used_when_the_folder_has_none(tmp_path: Path) -> None:
    folder = tmp_path / "groundingdino"
    (folder / "bert-base-uncased").mkdir(parents=True)
    (folder / "bert-base-uncased" / "config.json").write_text("{}")
    (folder / "groundingdino_swint_ogc.pth").write_bytes(b"")
    files = find_grounding_files(tmp_path)
    assert files.config.name == "GroundingDINO_SwinT_OGC.py" and files.config.parent.name == "config"
    assert files.key == "ground.groundingdino_swint_ogc"


def test_queries_become_groundingdino_captions() -> None:
    assert normalise_query("  Red   Car ") == "red car."
    assert normalise_query("dog . bench.") == "dog . bench."


# the backend on the tiny model ----------------------------------------------------------------


def test_detections_match_groundingdino_predict_on_the_same_model(ctx: StoreToolContext, model_dir: Path) -> None:
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    found = GroundingDinoBackend().detect(
        ctx, image, "dog . bench", box_threshold=0.3, text_threshold=0.25, max_boxes=5
    )
    files = find_grounding_files(model_dir)
    with ctx.pool.use(files.key, lambda d: None, backend="groundingdino") as bundle:
        assert (bundle.size, bundle.max_size) == (224, 320)  # from the config file
        saved = torch.load(files.checkpoint, weights_only=True)["model"]
        name = "transformer.decoder.bbox_embed.0.layers.0.weight"
        assert torch.equal(bundle.obj.state_dict()[name], saved[name])  # the weights were loaded
        boxes, scores, phrases = predict(
            bundle.obj, input_tensor(image, 224, 320), "dog . bench", 0.3, 0.25, device="cpu"
        )
    height, width = image.shape[:2]
    reference = []
    for (cx, cy, w, h), score, phrase in zip(boxes.tolist(), scores.tolist(), phrases, strict=True):
        box = (
            max((cx - w / 2) * width, 0),
            max((cy - h / 2) * height, 0),
            min((cx + w / 2) * width, width),
            min((cy + h / 2) * height, height),
        )
        reference.append((box, round(score, 4), phrase.strip()))
    assert 0 < len(found) <= 5
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for detection in found:
        match = [r for r in reference if np.allclose(r[0], detection.box, atol=0.01) and r[1] == detection.score]
        assert match, f"{detection} is not among groundingdino's own predictions"
        assert detection.phrase == (match[0][2] or "dog . bench")
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    info = {m.key: m for m in ctx.pool.describe()}[files.key]
    assert (info.device, info.dtype, info.family) == ("cpu", "fp32", "ground")


def test_a_threshold_of_one_finds_nothing(ctx: StoreToolContext) -> None:
    image = media.read_image_rgb(DATA / "dog.jpg")
    assert GroundingDinoBackend().detect(ctx, image, "dog", box_threshold=1.0) == []


# the tools through the API --------------------------------------------------------------------


def test_ground_returns_boxes_and_a_picture_of_them(client: TestClient) -> None:
    tools = {t["name"]: t for t in client.get("/api/tools").json()}
    assert tools["ground"]["backend"] == "groundingdino"
    assert tools["ground_and_segment"]["backend"] == "groundingdino+sam"
    session = new_session(client)
    image = upload(client, session, "dog_on_bench.png")
    response = client.post(
        "/api/tools/ground", json={"session": session, "args": {"image_path": image["path"], "query": "dog"}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    detections = body["data"]["detections"]
    assert detections and len(detections) <= 10 and body["text"].startswith(f"Found {len(detections)} in")
    (picture,) = body["artifacts"]
    assert picture["kind"] == "image" and picture["parent"] == image["path"]
    assert client.get(f"/api/sessions/{session}").json()["active_image"] == image["path"]  # not replaced


def test_ground_and_segment_selects_the_union_of_sam_masks_of_the_boxes(
    client: TestClient, ctx: StoreToolContext, tmp_path: Path
) -> None:
    session = new_session(client)
    image = upload(client, session, "dog_on_bench.png")
    args = {"image_path": image["path"], "query": "bench", "max_boxes": 3}
    response = client.post("/api/tools/ground_and_segment", json={"session": session, "args": args})

    # the same computation, outside the server
    path, pixels = add_image(ctx, "dog_on_bench.png")
    found = GroundingDinoBackend().detect(ctx, pixels, "bench", max_boxes=3)
    masks = SamSegmentBackend().predict_boxes(ctx, path, pixels, [d.box for d in found])
    expected = np.logical_or.reduce([m.mask for m in masks])
    if not expected.any():  # the random SAM may draw nothing inside the boxes
        assert response.status_code == 422 and response.json()["error"]["code"] == "empty_mask"
        return
    assert response.status_code == 200, response.text
    body = response.json()
    selection = body["artifacts"][0]
    assert selection["kind"] == "mask" and selection["parent"] == image["path"]
    assert len(body["artifacts"]) == (1 + len(found) if len(found) > 1 else 1)
    assert [o["box"] for o in body["data"]["objects"]] == [list(d.box) for d in found]
    state = client.get(f"/api/sessions/{session}").json()
    assert state["active_mask"] == selection["path"]
    raw = client.get(f"/api/sessions/{session}/files/{selection['path']}").content
    stored = tmp_path / "selection.png"
    stored.write_bytes(raw)
    np.testing.assert_array_equal(media.read_mask(stored), expected)


def test_finding_nothing_is_a_422_and_leaves_the_session_as_it_was(client: TestClient) -> None:
    session = new_session(client)
    image = upload(client, session, "dog.jpg")["path"]
    before = client.get(f"/api/sessions/{session}").json()
    args = {"image_path": image, "query": "bench", "box_threshold": 1.0}
    response = client.post("/api/tools/ground_and_segment", json={"session": session, "args": args})
    assert response.status_code == 422 and response.json()["error"]["code"] == "nothing_found"
    assert "bench" in response.json()["error"]["message"]
    after = client.get(f"/api/sessions/{session}").json()
    assert after["artifacts"] == before["artifacts"] and after["active_mask"] == before["active_mask"]


def test_a_query_of_ten_thousand_characters_is_refused(client: TestClient) -> None:
    session = new_session(client)
    image = upload(client, session, "dog.jpg")["path"]
    for tool in ("ground", "ground_and_segment"):
        args = {"image_path": image, "query": "dog " * 2500}
        response = client.post(f"/api/tools/{tool}", json={"session": session, "args": args})
        assert response.status_code == 422 and "query" in response.json()["error"]["message"]

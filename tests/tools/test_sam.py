"""The SAM backend and the segment_everything tool, on a tiny random SAM saved as a checkpoint.

The tiny model's masks mean nothing, so the backend is checked against segment-anything's own
``SamPredictor`` on the same weights: same masks, the best-scoring of the three proposals for a
single click, one image embedding per image however many clicks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from segment_anything import SamPredictor

from igpt_server import media
from igpt_server.errors import ToolUnavailable
from igpt_server.models.pool import ModelPool
from igpt_server.perception.gestures import Box, Click, ClickPoint, Stroke
from igpt_server.settings import PoolSettings, Settings
from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import ToolRunner
from igpt_tools.sam import (
    SamConfig,
    SamSegmentBackend,
    SegmentEverythingTool,
    build_sam,
    find_checkpoint,
    gesture_prompt,
    stroke_points,
)
from tests.helpers import DATA, make_client, new_session, upload
from tests.tiny_perception import TINY_SAM, tiny_sam


def make_ctx(tmp_path: Path, **kw: object) -> StoreToolContext:
    settings = Settings(data_dir=tmp_path / "data", model_dir=tiny_sam(), devices={"sam": "cpu"}, **kw)  # type: ignore[arg-type]
    store = SessionStore(settings.data_dir)
    return StoreToolContext(store.create().id, store, settings, ModelPool(settings))


def add_image(ctx: StoreToolContext, name: str) -> tuple[str, np.ndarray]:
    image = media.read_image_rgb(DATA / name)
    artifact = ctx.store.add_artifact(
        ctx.session_id,
        ArtifactKind.image,
        media.encode_png(image),
        ext="png",
        stem=Path(name).stem,
        width=image.shape[1],
        height=image.shape[0],
    )
    return artifact.path, image


@pytest.fixture(scope="module")
def reference() -> SamPredictor:
    """segment-anything's predictor on the tiny checkpoint, loaded without our code."""
    model = build_sam(SamConfig.model_validate(TINY_SAM))
    model.load_state_dict(torch.load(tiny_sam() / "sam" / str(TINY_SAM["checkpoint"]), weights_only=True))
    return SamPredictor(model)


# finding checkpoints -------------------------------------------------------------------------


def test_without_a_model_dir_the_reason_says_what_to_configure(tmp_path: Path) -> None:
    reason = SamSegmentBackend().unavailable_reason(Settings(data_dir=tmp_path))
    assert reason is not None and "IGPT_MODEL_DIR" in reason and "sam_vit_h_4b8939.pth" in reason


def test_an_empty_model_dir_names_the_folder_it_looked_in(tmp_path: Path) -> None:
    reason = SamSegmentBackend().unavailable_reason(Settings(data_dir=tmp_path, model_dir=tmp_path / "models"))
    assert reason is not None and str(tmp_path / "models" / "sam") in reason


def test_official_checkpoints_are_recognised_by_name_largest_first(tmp_path: Path) -> None:
    folder = tmp_path / "sam"
    folder.mkdir()
    (folder / "sam_vit_b_01ec64.pth").write_bytes(b"")
    (folder / "sam_vit_l_0b3195.pth").write_bytes(b"")
    found = find_checkpoint(tmp_path)
    assert found.path.name == "sam_vit_l_0b3195.pth" and found.key == "sam.vit_l"
    assert (found.config.encoder_embed_dim, found.config.encoder_depth) == (1024, 24)


def test_a_broken_config_or_missing_checkpoint_is_reported_with_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "sam"
    folder.mkdir()
    (folder / "sam_config.json").write_text(json.dumps({"checkpoint": "gone.pth"}))
    with pytest.raises(ToolUnavailable, match=r"gone\.pth, which does not exist"):
        find_checkpoint(tmp_path)
    (folder / "sam_config.json").write_text(json.dumps({"checkpoint": "x.pth", "wings": 2}))
    with pytest.raises(ToolUnavailable, match="not a valid SAM config"):
        find_checkpoint(tmp_path)


def test_a_corrupt_checkpoint_makes_the_call_a_503_naming_the_file(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "sam").mkdir(parents=True)
    (models / "sam" / "sam_vit_b_01ec64.pth").write_bytes(b"not a checkpoint")
    with make_client(tmp_path / "data", model_dir=models, devices={"sam": "cpu"}) as client:
        session = new_session(client)
        image = upload(client, session, "dog.jpg")["path"]
        response = client.post(
            "/api/tools/segment_everything", json={"session": session, "args": {"image_path": image}}
        )
        assert response.status_code == 503, response.text
        assert "sam_vit_b_01ec64.pth" in response.json()["error"]["message"]
        assert client.get("/api/health").status_code == 200


# prompts from gestures -------------------------------------------------------------------------


def test_gestures_become_sam_prompts() -> None:
    click = Click(points=[ClickPoint(x=10, y=20, label=1), ClickPoint(x=30, y=40, label=0)])
    assert gesture_prompt(click) == ([(10, 20), (30, 40)], [1, 0], None)
    assert gesture_prompt(Box(x0=1, y0=2, x1=30, y1=40)) == ([], [], (1, 2, 30, 40))
    points, labels, box = gesture_prompt(Stroke(points=[(0, 0), (70, 0)], width=5))
    assert box is None and labels == [1] * 8 and [p[0] for p in points] == [0, 10, 20, 30, 40, 50, 60, 70]


def test_stroke_points_are_spread_evenly_by_length() -> None:
    stroke = Stroke(points=[(0, 0), (10, 0), (10, 30)], width=4)
    assert stroke_points(stroke, 5) == [(0, 0), (10, 0), (10, 10), (10, 20), (10, 30)]
    assert stroke_points(Stroke(points=[(5, 5)], width=4), 5) == [(5, 5)]


# the backend on the tiny model ----------------------------------------------------------------


def test_a_click_gives_the_best_scoring_of_three_masks(tmp_path: Path, reference: SamPredictor) -> None:
    ctx = make_ctx(tmp_path)
    path, image = add_image(ctx, "dog_on_bench.png")
    mask = SamSegmentBackend().segment(ctx, path, image, Click(points=[ClickPoint(x=300, y=420)]))
    reference.set_image(image)
    masks, scores, _ = reference.predict(np.array([[300.0, 420.0]]), np.array([1]), multimask_output=True)
    assert mask.dtype == bool and mask.shape == image.shape[:2]
    np.testing.assert_array_equal(mask, masks[int(np.argmax(scores))])


def test_box_and_points_together_give_one_mask(tmp_path: Path, reference: SamPredictor) -> None:
    ctx = make_ctx(tmp_path)
    path, image = add_image(ctx, "dog_on_bench.png")
    result = SamSegmentBackend().predict(
        ctx, path, image, points=[(300, 420), (100, 100)], labels=[1, 0], box=(150, 250, 500, 600)
    )
    reference.set_image(image)
    masks, scores, _ = reference.predict(
        np.array([[300.0, 420.0], [100.0, 100.0]]),
        np.array([1, 0]),
        np.array([150, 250, 500, 600]),
        multimask_output=False,
    )
    np.testing.assert_array_equal(result.mask, masks[0])
    assert result.score == pytest.approx(float(scores[0]), abs=1e-5)


def test_boxes_in_a_batch_match_boxes_one_by_one(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    path, image = add_image(ctx, "dog_on_bench.png")
    backend = SamSegmentBackend()
    boxes = [(10.0, 20.0, 200.0, 300.0), (150.0, 250.0, 500.0, 600.0), (0.0, 0.0, 512.0, 512.0)]
    batch = backend.predict_boxes(ctx, path, image, boxes)
    for box, got in zip(boxes, batch, strict=True):
        alone = backend.predict(ctx, path, image, box=box)
        np.testing.assert_array_equal(got.mask, alone.mask)
        assert got.score == pytest.approx(alone.score, abs=1e-5)


def test_each_image_is_embedded_once_and_the_cache_is_bounded(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, pool=PoolSettings(sam_embedding_cache=2))
    backend = SamSegmentBackend()
    images = [add_image(ctx, name) for name in ("dog_on_bench.png", "dog.jpg", "corgi.jpeg")]
    click = Click(points=[ClickPoint(x=50, y=60)])
    backend.segment(ctx, *images[0], click)
    model = ctx.pool.loaded("sam.tiny")
    assert model is not None
    encoder_runs: list[int] = []
    hook = model.obj.model.image_encoder.register_forward_hook(lambda *_: encoder_runs.append(1))
    try:
        for _ in range(3):
            backend.segment(ctx, *images[0], click)
        backend.segment(ctx, *images[0], Box(x0=10, y0=10, x1=200, y1=200))
        assert encoder_runs == []  # five prompts, one embedding
        backend.segment(ctx, *images[1], click)
        backend.segment(ctx, *images[2], click)
        assert len(encoder_runs) == 2 and len(backend.cache) == 2
        backend.segment(ctx, *images[0], click)  # evicted by the bound: embedded again
        assert len(encoder_runs) == 3
    finally:
        hook.remove()
    (info,) = ctx.pool.describe()
    assert (info.key, info.device, info.dtype, info.state) == ("sam.tiny", "cpu", "fp32", "loaded")
    assert info.memory_bytes == sum(p.numel() * 4 for p in model.obj.model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.obj.model.buffers()
    )


def test_a_cached_embedding_gives_the_same_mask_as_a_fresh_one(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    path, image = add_image(ctx, "corgi.jpeg")
    click = Click(points=[ClickPoint(x=120, y=90), ClickPoint(x=10, y=10, label=0)])
    first = SamSegmentBackend().segment(ctx, path, image, click)
    backend = SamSegmentBackend()
    backend.segment(ctx, path, image, Box(x0=0, y0=0, x1=50, y1=50))
    np.testing.assert_array_equal(backend.segment(ctx, path, image, click), first)


def test_sessions_do_not_share_embeddings(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    other = StoreToolContext(ctx.store.create().id, ctx.store, ctx.settings, ctx.pool)
    backend = SamSegmentBackend()
    click = Click(points=[ClickPoint(x=50, y=60)])
    backend.segment(ctx, *add_image(ctx, "dog.jpg"), click)
    backend.segment(other, *add_image(other, "dog.jpg"), click)
    assert len(backend.cache) == 2 and backend.cache.hits == 0


# through the API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("sam-api"), model_dir=tiny_sam(), devices={"sam": "cpu"}) as client:
        yield client


BOX = {"type": "box", "x0": 0, "y0": 0, "x1": 512, "y1": 512}


def test_segment_uses_sam_first_when_a_checkpoint_is_configured(
    sam_client: TestClient, reference: SamPredictor
) -> None:
    tools = {t["name"]: t for t in sam_client.get("/api/tools").json()}
    assert tools["segment"]["backend"] == "sam"
    assert [b["name"] for b in tools["segment"]["backends"]] == ["sam2", "sam", "hed", "opencv"]
    assert tools["segment_everything"]["available"]
    session = new_session(sam_client)
    image = upload(sam_client, session, "dog_on_bench.png")["path"]
    args = {"image_path": image, "gesture": BOX}
    response = sam_client.post("/api/tools/segment", json={"session": session, "args": args})
    reference.set_image(media.read_image_rgb(DATA / "dog_on_bench.png"))
    expected, _, _ = reference.predict(box=np.array([0, 0, 512, 512]), multimask_output=False)
    if expected[0].any():
        assert response.status_code == 200 and response.json()["backend"] == "sam", response.text
    else:  # the random SAM selected nothing: the segment tool says so
        assert response.status_code == 422 and response.json()["error"]["code"] == "nothing_selected"
    models = {m["key"]: m for m in sam_client.get("/api/models").json()}
    assert models["sam.tiny"]["loaded"] and models["sam.tiny"]["device"] == "cpu"


def test_segment_everything_returns_an_overlay_and_the_largest_masks(tmp_path: Path) -> None:
    # the tiny random SAM scores its masks low: the tool is built with the quality filters off
    ctx = make_ctx(tmp_path)
    tool = SegmentEverythingTool([SamSegmentBackend()], pred_iou_thresh=0.0, stability_score_thresh=0.0)
    runner = ToolRunner(ToolRegistry([tool], ctx.settings), ctx.store, ctx.settings, ctx.pool)
    path, _ = add_image(ctx, "truck.jpg")  # 1800x1200: generated at 1024, masks scaled back
    before = ctx.store.get(ctx.session_id)
    result = runner.call(
        ctx.session_id, "segment_everything", {"image_path": path, "points_per_side": 4, "max_masks": 3}
    )
    segments = result.data["segments"]
    overlay, *masks = result.artifacts
    assert segments and overlay.kind == "image" and overlay.parent == path
    assert (overlay.width, overlay.height) == (1800, 1200)
    assert len(masks) == min(3, len(segments))
    assert [s["area"] for s in segments] == sorted((s["area"] for s in segments), reverse=True)
    for artifact, segment in zip(masks, segments, strict=False):
        assert artifact.kind == "mask" and artifact.parent == path and (artifact.width, artifact.height) == (1800, 1200)
        mask = ctx.read_mask(artifact.path)
        assert int(mask.sum()) == segment["area"]
        x0, y0, x1, y1 = segment["box"]
        assert mask[y0:y1, x0:x1].sum() == segment["area"] and mask[y0, :].any() and mask[:, x0].any()
    after = ctx.store.get(ctx.session_id)
    assert (after.active_image, after.active_mask) == (before.active_image, before.active_mask)


def test_segment_everything_through_the_api_keeps_only_confident_segments(
    sam_client: TestClient, tmp_path: Path
) -> None:
    session = new_session(sam_client)
    image = upload(sam_client, session, "dog.jpg")["path"]
    args = {"image_path": image, "points_per_side": 4}
    response = sam_client.post("/api/tools/segment_everything", json={"session": session, "args": args})
    assert response.status_code == 200, response.text
    body = response.json()
    ctx = make_ctx(tmp_path)
    expected = SamSegmentBackend().segment_everything(ctx, media.read_image_rgb(DATA / "dog.jpg"), points_per_side=4)
    assert [s["box"] for s in body["data"]["segments"]] == [list(s.box) for s in expected]
    if expected:
        assert len(body["artifacts"]) == 1 + min(8, len(expected))
    else:  # the random model is never confident: nothing is stored and the reply says so
        assert body["artifacts"] == [] and body["text"] == f"SAM found no segments in {image}."


def test_segment_everything_rejects_out_of_range_arguments(sam_client: TestClient) -> None:
    session = new_session(sam_client)
    image = upload(sam_client, session, "dog.jpg")["path"]
    response = sam_client.post(
        "/api/tools/segment_everything",
        json={"session": session, "args": {"image_path": image, "points_per_side": 1000}},
    )
    assert response.status_code == 422 and "points_per_side" in response.json()["error"]["message"]


def test_a_6000x4000_photo_is_segmented_at_full_size(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    big = cv2.resize(media.read_image_rgb(DATA / "truck.jpg"), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    mask = SamSegmentBackend().segment(ctx, "image/0000beef_big.png", big, Click(points=[ClickPoint(x=3000, y=2500)]))
    assert mask.shape == (4000, 6000) and mask.dtype == bool
    segments = SamSegmentBackend().segment_everything(
        ctx, big, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    assert segments and all(s.mask.shape == (4000, 6000) for s in segments)

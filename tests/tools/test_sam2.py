"""The SAM 2 backend, on a tiny random SAM 2 built from the package's own config with smaller sizes.

The tiny model's masks mean nothing, so the backend is checked against the ``sam2`` package's
own ``SAM2ImagePredictor`` on the same weights: same masks, the best-scoring of three
proposals for a single click, one image embedding per image however many prompts, and the
same API and tools as SAM (chosen over SAM when both checkpoints are present).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from igpt_server import media
from igpt_server.models.pool import ModelPool
from igpt_server.perception.gestures import Box, Click, ClickPoint
from igpt_server.settings import PoolSettings, Settings
from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.sam2 import (
    CONFIG_FILE,
    TINY_SAM2,
    Sam2Config,
    Sam2SegmentBackend,
    build_sam2_model,
    find_checkpoint,
)
from tests.helpers import DATA, make_client, new_session, upload
from tests.tiny_perception import tiny_sam


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir with ``sam2/`` (the tiny SAM 2 as an official-style ``{"model": ...}`` file) and
    ``sam/`` (the tiny SAM of the SAM tests)."""
    root = tmp_path_factory.mktemp("models")
    (root / "sam2").mkdir()
    torch.manual_seed(0)
    model = build_sam2_model(Sam2Config.model_validate(TINY_SAM2))
    torch.save({"model": model.state_dict()}, root / "sam2" / TINY_SAM2["checkpoint"])
    (root / "sam2" / CONFIG_FILE).write_text(json.dumps(TINY_SAM2), encoding="utf-8")
    (root / "sam").symlink_to(tiny_sam() / "sam", target_is_directory=True)  # SAM beside it
    return root


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> object:
    """The package's own predictor on the tiny checkpoint, loaded without our code."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2_model(Sam2Config.model_validate(TINY_SAM2))
    model.load_state_dict(torch.load(model_dir / "sam2" / TINY_SAM2["checkpoint"], weights_only=True)["model"])
    return SAM2ImagePredictor(model)


def make_ctx(tmp_path: Path, model_dir: Path, **kw: object) -> StoreToolContext:
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, devices={"sam2": "cpu"}, **kw)  # type: ignore[arg-type]
    store = SessionStore(settings.data_dir)
    return StoreToolContext(store.create().id, store, settings, ModelPool(settings))


def add_image(ctx: StoreToolContext, name: str) -> tuple[str, np.ndarray]:
    image = media.read_image_rgb(DATA / name)
    artifact = ctx.store.add_artifact(
        ctx.session_id, ArtifactKind.image, media.encode_png(image), ext="png", stem=Path(name).stem
    )
    return artifact.path, image


# finding checkpoints ----------------------------------------------------------------------------


def test_without_checkpoints_the_reason_names_the_files_and_folder(tmp_path: Path) -> None:
    assert "set IGPT_MODEL_DIR" in (Sam2SegmentBackend().unavailable_reason(Settings(data_dir=tmp_path)) or "")
    reason = Sam2SegmentBackend().unavailable_reason(Settings(data_dir=tmp_path, model_dir=tmp_path))
    assert reason is not None and "sam2.1_hiera_large.pt" in reason and str(tmp_path / "sam2") in reason


def test_official_checkpoints_are_recognised_by_name_largest_first(tmp_path: Path) -> None:
    (tmp_path / "sam2").mkdir()
    for name in ("sam2.1_hiera_tiny.pt", "sam2.1_hiera_base_plus.pt", "sam2_hiera_large.pt"):
        (tmp_path / "sam2" / name).write_bytes(b"")
    found = find_checkpoint(tmp_path)
    assert found.path.name == "sam2_hiera_large.pt"  # the largest size wins
    assert found.key == "sam2.sam2_large" and found.config.config_name() == "configs/sam2/sam2_hiera_l.yaml"
    (tmp_path / "sam2" / "sam2.1_hiera_large.pt").write_bytes(b"")
    found = find_checkpoint(tmp_path)  # at the same size SAM 2.1 wins
    assert found.key == "sam2.sam2_1_large" and found.config.config_name() == "configs/sam2.1/sam2.1_hiera_l.yaml"


def test_a_corrupt_checkpoint_is_a_503_naming_the_file(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "sam2").mkdir(parents=True)
    (models / "sam2" / "sam2.1_hiera_tiny.pt").write_bytes(b"not a checkpoint")
    with make_client(tmp_path / "data", model_dir=models, devices={"sam2": "cpu"}) as client:
        session = new_session(client)
        image = upload(client, session, "dog.jpg")["path"]
        args = {"image_path": image, "gesture": {"type": "box", "x0": 0, "y0": 0, "x1": 50, "y1": 50}}
        response = client.post("/api/tools/segment", json={"session": session, "args": args})
    assert response.status_code == 503, response.text
    assert "sam2.1_hiera_tiny.pt" in response.json()["error"]["message"]


# prompts, against the package's own predictor ------------------------------------------------------


def test_a_click_gives_the_best_of_three_masks_and_box_plus_points_one(
    tmp_path: Path, model_dir: Path, reference: object
) -> None:
    ctx = make_ctx(tmp_path, model_dir)
    path, image = add_image(ctx, "dog_on_bench.png")
    backend = Sam2SegmentBackend()
    click = backend.predict(ctx, path, image, points=[(300, 420)], labels=[1])
    both = backend.predict(ctx, path, image, points=[(300, 420), (100, 100)], labels=[1, 0], box=(150, 250, 500, 600))
    reference.set_image(image)  # type: ignore[attr-defined]
    masks, scores, _ = reference.predict(  # type: ignore[attr-defined]
        point_coords=np.array([[300.0, 420.0]]), point_labels=np.array([1]), multimask_output=True
    )
    assert masks.shape[0] == 3
    np.testing.assert_array_equal(click.mask, masks[int(np.argmax(scores))])
    assert click.score == pytest.approx(float(scores.max()), abs=1e-5)
    masks, scores, _ = reference.predict(  # type: ignore[attr-defined]
        point_coords=np.array([[300.0, 420.0], [100.0, 100.0]]),
        point_labels=np.array([1, 0]),
        box=np.array([150.0, 250.0, 500.0, 600.0]),
        multimask_output=False,
    )
    np.testing.assert_array_equal(both.mask, masks[0])
    assert both.mask.shape == image.shape[:2] and both.mask.dtype == bool


def test_each_image_is_embedded_once_and_boxes_in_a_batch_match_boxes_alone(tmp_path: Path, model_dir: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir, pool=PoolSettings(sam_embedding_cache=4))
    backend = Sam2SegmentBackend()
    path, image = add_image(ctx, "dog_on_bench.png")
    first = backend.segment(ctx, path, image, Click(points=[ClickPoint(x=50, y=60)]))
    model = ctx.pool.loaded("sam2.tiny")
    assert model is not None
    encoder_runs: list[int] = []
    hook = model.obj.model.image_encoder.register_forward_hook(lambda *_: encoder_runs.append(1))
    try:
        again = backend.segment(ctx, path, image, Click(points=[ClickPoint(x=50, y=60)]))
        boxes = [(10.0, 20.0, 200.0, 300.0), (150.0, 250.0, 500.0, 600.0)]
        batch = backend.predict_boxes(ctx, path, image, boxes)
        alone = [backend.predict(ctx, path, image, box=box) for box in boxes]
        assert encoder_runs == []  # five prompts, one embedding (from the cache after the first)
    finally:
        hook.remove()
    np.testing.assert_array_equal(again, first)  # the cached embedding gives the same mask
    for got, one in zip(batch, alone, strict=True):
        np.testing.assert_array_equal(got.mask, one.mask)
        assert got.score == pytest.approx(one.score, abs=1e-5)
    assert backend.cache.hits >= 4 and len(backend.cache) == 1
    (info,) = ctx.pool.describe()
    assert (info.key, info.family, info.backend, info.device, info.dtype) == (
        "sam2.tiny",
        "sam2",
        "sam2",
        "cpu",
        "fp32",
    )


def test_precompute_embeds_an_image_before_its_first_gesture(tmp_path: Path, model_dir: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir)
    backend = Sam2SegmentBackend()
    path, image = add_image(ctx, "corgi.jpeg")
    assert backend.precompute(ctx, path, image) is True
    assert backend.precompute(ctx, path, image) is False  # already cached
    answer = backend.answer(ctx, path, image, Box(x0=10, y0=10, x1=200, y1=200))
    assert answer.precomputed is True and answer.mask.shape == image.shape[:2]


def test_the_encoder_can_run_in_bf16_and_still_hands_fp32_features_to_the_decoder(
    tmp_path: Path, model_dir: Path
) -> None:
    ctx = make_ctx(tmp_path, model_dir, dtypes={"sam2": "bf16"})
    backend = Sam2SegmentBackend()
    path, image = add_image(ctx, "dog.jpg")
    mask = backend.segment(ctx, path, image, Click(points=[ClickPoint(x=100, y=100)]))
    assert mask.shape == image.shape[:2]
    model = ctx.pool.loaded("sam2.tiny")
    assert model is not None and model.dtype == "bf16"
    assert next(model.obj.model.image_encoder.parameters()).dtype == torch.bfloat16
    assert model.obj._features["image_embed"].dtype == torch.float32


# the tools and the API ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def both_client(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[TestClient]:
    """A server whose model dir holds SAM and SAM 2."""
    data = tmp_path_factory.mktemp("sam2-api")
    with make_client(data, model_dir=model_dir, devices={"sam": "cpu", "sam2": "cpu"}) as client:
        yield client


def test_with_both_checkpoints_sam2_answers_segment_everything_and_grounding(both_client: TestClient) -> None:
    tools = {t["name"]: t for t in both_client.get("/api/tools").json()}
    assert tools["segment"]["backend"] == "sam2"
    assert [b["name"] for b in tools["segment"]["backends"]][:2] == ["sam2", "sam"]
    assert tools["segment_everything"]["backend"] == "sam2"
    assert [b["name"] for b in tools["ground_and_segment"]["backends"]] == ["groundingdino+sam2", "groundingdino+sam"]


def test_a_click_on_the_page_selects_through_sam2_like_sam(both_client: TestClient) -> None:
    session = new_session(both_client)
    image = upload(both_client, session, "dog_on_bench.png")["path"]
    body = {"gesture": {"type": "box", "x0": 100, "y0": 200, "x1": 450, "y1": 500}, "intent": "select"}
    response = both_client.post(f"/api/sessions/{session}/gesture", json=body)
    if response.status_code == 422:  # the random model selected nothing: the segment tool says so
        assert response.json()["error"]["code"] == "nothing_selected"
    else:
        assert response.status_code == 200, response.text
        (mask,) = response.json()["artifacts"]
        assert mask["kind"] == "mask" and mask["parent"] == image
    models = {m["key"]: m for m in both_client.get("/api/models").json()}
    assert models["sam2.tiny"]["loaded"] and "sam.tiny" not in models


def test_segment_everything_with_sam2_gives_segments_at_full_size(tmp_path: Path, model_dir: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir)
    image = media.read_image_rgb(DATA / "truck.jpg")  # 1800x1200: generated at 1024, masks scaled back
    segments = Sam2SegmentBackend().segment_everything(
        ctx, image, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    assert segments and all(s.mask.shape == (1200, 1800) for s in segments)
    assert [s.area for s in segments] == sorted((s.area for s in segments), reverse=True)
    for segment in segments:
        x0, y0, x1, y1 = segment.box
        assert segment.mask[y0:y1, x0:x1].sum() == segment.area == int(segment.mask.sum())


def test_sam_can_be_chosen_by_setting_when_both_are_present(tmp_path: Path, model_dir: Path) -> None:
    backends = {"segment": "sam", "segment_everything": "sam", "ground_and_segment": "groundingdino+sam"}
    with make_client(tmp_path, model_dir=model_dir, devices={"sam": "cpu"}, backends=backends) as client:
        tools = {t["name"]: t for t in client.get("/api/tools").json()}
    assert tools["segment"]["backend"] == "sam" and tools["segment_everything"]["backend"] == "sam"

"""Stable Diffusion inpainting backend: crop around the mask, paste back, nothing else changes.

Runs the real diffusers pipeline and loading code on a tiny random-weight checkpoint saved
to a temporary model directory (native size 64 px).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from igpt_server.errors import InvalidInput, ToolUnavailable
from igpt_server.media import encode_png, read_image_rgb
from igpt_server.models.pool import ModelPool
from igpt_server.perception.geometry import box_mask, dilate
from igpt_server.settings import Settings
from igpt_server.store import SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.diffusion import fit_size
from igpt_tools.inpaint import POOL_KEY, CropBox, SdInpaintBackend, crop_around, inward_alpha, paste
from tests.helpers import make_client, new_session, upload
from tests.tools.tiny_sd import tiny_model_dir

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture
def ctx(tmp_path: Path, model_dir: Path) -> Iterator[StoreToolContext]:
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, devices={"inpaint": "cpu"})
    store = SessionStore(settings.data_dir)
    session = store.create()
    yield StoreToolContext(session.id, store, settings, ModelPool(settings))
    store.close()


@pytest.fixture(scope="module")
def truck() -> np.ndarray:
    return read_image_rgb(DATA / "truck.jpg")


# geometry of crop and paste ----------------------------------------------------------------


def test_crop_surrounds_the_mask_with_context_and_stays_inside_the_image() -> None:
    mask = box_mask((1700, 1100, 1790, 1190), 1200, 1800)
    box = crop_around(mask, min_side=512)
    assert (box.x0, box.y0) <= (1700, 1100) and box.x1 >= 1790 and box.y1 >= 1190
    assert box.x1 <= 1800 and box.y1 <= 1200 and box.width == 512 and box.height == 512


def test_crop_of_a_large_mask_grows_by_half_its_size_until_the_border() -> None:
    mask = box_mask((600, 400, 1000, 800), 1200, 1800)
    box = crop_around(mask, min_side=64)
    assert (box.x0, box.y0, box.x1, box.y1) == (400, 200, 1200, 1000)


def test_crop_of_an_empty_mask_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="covers nothing"):
        crop_around(np.zeros((50, 60), bool), min_side=64)


def test_inward_feather_is_zero_outside_and_full_inside() -> None:
    mask = box_mask((10, 10, 90, 90), 100, 100)
    alpha = inward_alpha(mask, feather_px=8)
    assert alpha[~mask].max() == 0.0
    assert alpha[50, 50] == 1.0 and 0.0 < alpha[10, 50] < 0.5
    thin = box_mask((10, 50, 90, 53), 100, 100)  # a 3-pixel line is still fully replaced at its core
    assert inward_alpha(thin, feather_px=8)[51, 50] == 1.0


def test_paste_changes_only_masked_pixels() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = box_mask((40, 30, 80, 70), 120, 160)
    box = CropBox(20, 10, 100, 90)
    out = paste(image, np.full((80, 80, 3), 7, np.uint8), mask, box, feather_px=4)
    assert np.array_equal(out[~mask], image[~mask])
    assert (out[50, 60] == 7).all()


def test_working_size_keeps_the_aspect_in_multiples() -> None:
    assert fit_size(1800, 1200, 512, 64) == (512, 320)
    assert fit_size(300, 900, 64, 4) == (20, 64)


# the backend on the tiny checkpoint ----------------------------------------------------------


def test_backend_says_where_the_checkpoint_goes(tmp_path: Path) -> None:
    backend = SdInpaintBackend()
    reason = backend.unavailable_reason(Settings(data_dir=tmp_path))
    assert reason is not None and "IGPT_MODEL_DIR" in reason and "sd-inpaint" in reason
    reason = backend.unavailable_reason(Settings(data_dir=tmp_path, model_dir=tmp_path / "models"))
    assert reason is not None and str(tmp_path / "models" / "sd-inpaint") in reason


def test_a_checkpoint_in_the_hugging_face_cache_is_used_offline(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, truck: np.ndarray
) -> None:
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--stable-diffusion-v1-5--stable-diffusion-inpainting"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / "0123abcd").symlink_to(model_dir / "sd-inpaint")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = Settings(data_dir=tmp_path / "data", devices={"inpaint": "cpu"})  # no IGPT_MODEL_DIR
    backend = SdInpaintBackend(steps=1)
    assert backend.unavailable_reason(settings) is None
    assert backend.checkpoint(settings) == repo / "snapshots" / "0123abcd"
    store = SessionStore(settings.data_dir)
    ctx = StoreToolContext(store.create().id, store, settings, ModelPool(settings))
    mask = box_mask((10, 10, 60, 60), *truck.shape[:2])
    assert backend.inpaint(ctx, truck, mask).shape == truck.shape
    store.close()


def test_remove_on_a_large_photo_keeps_everything_outside_the_mask(ctx: StoreToolContext, truck: np.ndarray) -> None:
    height, width = truck.shape[:2]
    mask = box_mask((700, 500, 900, 700), height, width)
    out = SdInpaintBackend(steps=3).inpaint(ctx, truck, mask)
    assert out.shape == truck.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], truck[~mask])
    assert np.abs(out[mask].astype(int) - truck[mask].astype(int)).mean() > 5  # the hole was repainted
    (info,) = ctx.pool.describe()
    assert (info.key, info.device, info.dtype, info.loaded) == (POOL_KEY, "cpu", "fp32", True)
    assert info.memory_bytes > 0


def test_a_prompt_replaces_the_region_reproducibly(ctx: StoreToolContext, truck: np.ndarray) -> None:
    mask = box_mask((100, 100, 400, 300), *truck.shape[:2])
    backend = SdInpaintBackend(steps=1)
    first = backend.inpaint(ctx, truck, mask, "a red sofa", seed=3)
    again = backend.inpaint(ctx, truck, mask, "a red sofa", seed=3)
    other = backend.inpaint(ctx, truck, mask, "a red sofa", seed=4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(first[~mask], truck[~mask])
    assert len(ctx.pool.describe()) == 1  # loaded once, shared by every call


def test_a_6000x4000_photo_is_processed_through_a_crop(ctx: StoreToolContext, truck: np.ndarray) -> None:
    big = np.ascontiguousarray(np.tile(truck, (4, 4, 1))[:4000, :6000])
    mask = box_mask((5000, 3000, 5600, 3500), 4000, 6000)
    out = SdInpaintBackend(steps=1).inpaint(ctx, big, mask, "grass")
    assert out.shape == (4000, 6000, 3)
    assert np.array_equal(out[~mask], big[~mask])


def test_a_whole_image_mask_cannot_be_removed_but_can_be_replaced(ctx: StoreToolContext) -> None:
    image = read_image_rgb(DATA / "dog_on_bench.png")
    everything = np.ones(image.shape[:2], bool)
    with pytest.raises(InvalidInput, match="whole image"):
        SdInpaintBackend(steps=1).inpaint(ctx, image, everything)
    out = SdInpaintBackend(steps=1).inpaint(ctx, image, everything, "a beach")
    assert out.shape == image.shape


def test_a_mask_of_another_size_is_refused(ctx: StoreToolContext, truck: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match="mask is 60x50"):
        SdInpaintBackend().inpaint(ctx, truck, np.ones((50, 60), bool))


def test_missing_checkpoint_is_a_503_not_a_crash(tmp_path: Path, truck: np.ndarray) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "empty")
    store = SessionStore(settings.data_dir)
    ctx = StoreToolContext(store.create().id, store, settings, ModelPool(settings))
    with pytest.raises(ToolUnavailable, match="sd-inpaint"):
        SdInpaintBackend().inpaint(ctx, truck, box_mask((0, 0, 10, 10), *truck.shape[:2]))
    store.close()


# the remove tool on this backend, through the API ----------------------------------------------------


def test_remove_through_the_api_uses_stable_diffusion_when_configured(tmp_path: Path, model_dir: Path) -> None:
    with make_client(tmp_path / "data", model_dir=model_dir, devices={"inpaint": "cpu"}) as client:
        tools = {t["name"]: t for t in client.get("/api/tools").json()}
        assert tools["remove"]["backend"] == "sd-inpaint" and tools["replace"]["backend"] == "sd-inpaint"
        sid = new_session(client)
        image = upload(client, sid, "truck.jpg")
        mask = box_mask((1200, 300, 1500, 600), image["height"], image["width"])
        response = client.post(
            f"/api/sessions/{sid}/files",
            files={"file": ("mask.png", encode_png(mask))},
            data={"kind": "mask", "parent": image["path"]},
        )
        assert response.status_code == 201, response.text
        selection = response.json()
        args = {"image_path": image["path"], "mask_path": selection["path"]}
        response = client.post("/api/tools/remove", json={"session": sid, "args": args})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["backend"] == "sd-inpaint"
        (made,) = body["artifacts"]
        out = np.asarray(Image.open(io.BytesIO(client.get(made["url"]).content)).convert("RGB"))
    before = read_image_rgb(DATA / "truck.jpg")
    hole = dilate(mask, body["data"]["dilation"])
    assert out.shape == before.shape
    # a JPEG in gives a quality-93 JPEG out: outside the hole only re-encoding noise differs
    outside = np.abs(out.astype(int) - before.astype(int))[~hole]
    assert outside.mean() < 1.0 and np.percentile(outside, 99) <= 8

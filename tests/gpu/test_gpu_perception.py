"""The perception backends and the model pool on a CUDA GPU (skipped without one).

Same tiny random models as the CPU tests, placed on ``cuda:0``: the pool moves real weights
between the GPU and the CPU, SAM's image encoder runs in bf16, GroundingDINO under fp16
autocast, the VLM in bf16, and a real out-of-memory error inside a request leaves the pool usable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from igpt_server import media
from igpt_server.errors import ServiceUnavailable
from igpt_server.models.pool import MiB, ModelPool
from igpt_server.perception.gestures import Click, ClickPoint
from igpt_server.settings import PoolSettings, Settings, VisionSettings
from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.ground import GroundingDinoBackend
from igpt_tools.sam import SamSegmentBackend
from igpt_tools.vqa import VisionQuery, VlmBackend
from tests.helpers import DATA
from tests.tiny_perception import tiny_grounding, tiny_sam, tiny_vlm

pytestmark = pytest.mark.gpu


def make_ctx(tmp_path: Path, **kw: object) -> StoreToolContext:
    settings = Settings(data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]
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


def test_sam_runs_on_the_gpu_with_a_bf16_encoder(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=tiny_sam(), devices={"sam": "cuda:0"})
    path, image = add_image(ctx, "dog_on_bench.png")
    backend = SamSegmentBackend()
    mask = backend.segment(ctx, path, image, Click(points=[ClickPoint(x=300, y=420)]))
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    (info,) = ctx.pool.describe()
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert (info.device, info.placement, info.dtype) == ("cuda:0", "cuda:0", expected)
    model = ctx.pool.loaded(info.key)
    assert model is not None and model.device == "cuda:0"
    sam = model.obj.model
    assert next(sam.image_encoder.parameters()).dtype != torch.float32
    assert next(sam.mask_decoder.parameters()).dtype == torch.float32
    assert next(sam.parameters()).is_cuda
    cached = next(iter(backend.cache._items.values()))
    assert backend.cache.misses == 1 and cached.state["features"].device.type == "cpu"


def test_sam2_runs_on_the_gpu_with_a_half_precision_encoder(tmp_path: Path) -> None:
    import json

    from igpt_tools.sam2 import CONFIG_FILE, TINY_SAM2, Sam2Config, Sam2SegmentBackend, build_sam2_model

    folder = tmp_path / "models" / "sam2"
    folder.mkdir(parents=True)
    torch.save({"model": build_sam2_model(Sam2Config.model_validate(TINY_SAM2)).state_dict()}, folder / "sam2_tiny.pt")
    (folder / CONFIG_FILE).write_text(json.dumps(TINY_SAM2), encoding="utf-8")
    ctx = make_ctx(tmp_path, model_dir=tmp_path / "models", devices={"sam2": "cuda:0"})
    path, image = add_image(ctx, "dog_on_bench.png")
    backend = Sam2SegmentBackend()
    mask = backend.segment(ctx, path, image, Click(points=[ClickPoint(x=300, y=420)]))
    again = backend.segment(ctx, path, image, Click(points=[ClickPoint(x=300, y=420)]))
    assert mask.shape == image.shape[:2] and np.array_equal(mask, again)
    (info,) = ctx.pool.describe()
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert (info.key, info.device, info.placement, info.dtype) == ("sam2.tiny", "cuda:0", "cuda:0", expected)
    model = ctx.pool.loaded("sam2.tiny")
    assert model is not None
    assert next(model.obj.model.image_encoder.parameters()).dtype != torch.float32
    assert next(model.obj.model.sam_mask_decoder.parameters()).dtype == torch.float32
    cached = next(iter(backend.cache._items.values()))
    assert backend.cache.misses == 1 and cached.state["image_embed"].device.type == "cpu"


def test_the_pool_offloads_real_weights_to_the_cpu_and_back(tmp_path: Path) -> None:
    pool = ModelPool(Settings(data_dir=tmp_path, pool=PoolSettings(gpu_budget_mb=1.5, offload_mb=64)))

    def load(device: str) -> torch.nn.Module:
        return torch.nn.Linear(MiB // 4, 1, bias=False).to(device)

    with pool.use("sam.a", load, backend="x", device="cuda:0") as first:
        assert first.weight.is_cuda
    with pool.use("ground.b", load, backend="x", device="cuda:0"):
        pass
    assert first.weight.device.type == "cpu"
    with pool.use("sam.a", load, backend="x", device="cuda:0") as again:
        assert again is first and again.weight.is_cuda
    assert {m.key: m.state for m in pool.describe()} == {"sam.a": "loaded", "ground.b": "offloaded"}


def test_a_real_out_of_memory_in_a_request_is_a_503_and_the_pool_stays_usable(tmp_path: Path) -> None:
    pool = ModelPool(Settings(data_dir=tmp_path))

    def load(device: str) -> torch.nn.Module:
        return torch.nn.Linear(8, 8).to(device)

    total = torch.cuda.get_device_properties(0).total_memory
    with (
        pytest.raises(ServiceUnavailable, match="ran out of memory"),
        pool.use("sam.x", load, backend="x", device="cuda:0"),
    ):
        torch.empty(total * 2, dtype=torch.uint8, device="cuda:0")
    with pool.use("sam.x", load, backend="x", device="cuda:0") as model:
        assert model(torch.ones(1, 8, device="cuda:0")).shape == (1, 8)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_grounding_runs_on_the_gpu(tmp_path: Path, dtype: str) -> None:
    ctx = make_ctx(tmp_path, model_dir=tiny_grounding(), devices={"ground": "cuda:0"}, dtypes={"ground": dtype})
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    found = GroundingDinoBackend().detect(ctx, image, "dog", box_threshold=0.3)
    assert all(0 <= d.box[0] < d.box[2] <= image.shape[1] for d in found)
    (info,) = ctx.pool.describe()
    assert (info.device, info.dtype) == ("cuda:0", dtype)


def test_the_vlm_answers_on_the_gpu_in_half_precision(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=tiny_vlm(), devices={"vqa": "cuda:0"}, vision=VisionSettings(max_tokens=6))
    image = media.read_image_rgb(DATA / "corgi.jpeg")
    answer = VlmBackend().answer(ctx, VisionQuery(instruction="What is it?", images=[image]))
    assert isinstance(answer, str)
    (info,) = ctx.pool.describe()
    assert info.device == "cuda:0" and info.dtype in ("bf16", "fp16")

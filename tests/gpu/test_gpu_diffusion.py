"""Diffusion tools on a CUDA GPU: half precision, device placement, shared base, out of memory.

The tiny random-weight checkpoints of tests/tools/tiny_sd.py, loaded through the backends
onto ``cuda:0``. Skipped where no GPU is visible (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from igpt_server.errors import ServiceUnavailable
from igpt_server.media import read_image_rgb
from igpt_server.models.pool import ModelPool
from igpt_server.perception.geometry import box_mask
from igpt_server.settings import Settings
from igpt_server.store import SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.generate import BASE_KEY, Control, Request, SdGenerateBackend, controlnet_pipeline
from igpt_tools.inpaint import POOL_KEY, SdInpaintBackend
from tests.tools.tiny_sd import tiny_model_dir

pytestmark = pytest.mark.gpu
DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def make_ctx(root: Path, model_dir: Path, **dtypes: str) -> StoreToolContext:
    settings = Settings(
        data_dir=root, model_dir=model_dir, devices={"inpaint": "cuda:0", "generate": "cuda:0"}, dtypes=dtypes
    )
    store = SessionStore(settings.data_dir)
    return StoreToolContext(store.create().id, store, settings, ModelPool(settings))


@pytest.fixture
def ctx(tmp_path: Path, model_dir: Path) -> Iterator[StoreToolContext]:
    context = make_ctx(tmp_path / "data", model_dir)
    yield context
    context.store.close()


def _never(device: str) -> Any:
    raise AssertionError("the model should already be loaded")


def test_inpainting_runs_in_fp16_on_the_gpu_and_keeps_the_outside(ctx: StoreToolContext) -> None:
    truck = read_image_rgb(DATA / "truck.jpg")
    mask = box_mask((700, 500, 900, 700), *truck.shape[:2])
    out = SdInpaintBackend(steps=3).inpaint(ctx, truck, mask, "a red sofa", seed=1)
    assert out.shape == truck.shape and np.array_equal(out[~mask], truck[~mask])
    (info,) = ctx.pool.describe()
    assert (info.key, info.device, info.dtype) == (POOL_KEY, "cuda:0", "fp16")
    with ctx.pool.use(POOL_KEY, _never, backend="sd-inpaint") as pipe:
        assert pipe.obj.unet.dtype == torch.float16 and pipe.obj.unet.device.type == "cuda"


def test_bf16_when_the_settings_ask_for_it(tmp_path: Path, model_dir: Path) -> None:
    ctx = make_ctx(tmp_path / "data", model_dir, inpaint="bf16")
    image = read_image_rgb(DATA / "dog_on_bench.png")
    mask = read_image_rgb(DATA / "dog_on_bench_mask.png")[..., 0] > 127
    SdInpaintBackend(steps=2).inpaint(ctx, image, mask)
    with ctx.pool.use(POOL_KEY, _never, backend="sd-inpaint") as pipe:
        assert pipe.obj.unet.dtype == torch.bfloat16
    ctx.store.close()


def test_controlnets_share_the_base_pipeline_on_the_gpu(ctx: StoreToolContext) -> None:
    backend = SdGenerateBackend()
    photo = read_image_rgb(DATA / "dog.jpg")
    request = Request("a dog", steps=2, guidance=7.5, control_scale=1.0, seed=0, size=64)
    for condition in ("canny", "hed"):
        edges = backend.condition_map(ctx, photo, condition, 64)
        image = backend.generate(ctx, request, Control(condition, edges))
        assert image.dtype == np.uint8 and max(image.shape[:2]) == 64
    models = {m.key: m for m in ctx.pool.describe()}
    assert models[BASE_KEY].device == "cuda:0" and models[BASE_KEY].dtype == "fp16"
    assert models["generate.controlnet.hed"].memory_bytes < models[BASE_KEY].memory_bytes
    with (
        ctx.pool.use(BASE_KEY, _never, backend="sd-controlnet") as base,
        ctx.pool.use("generate.controlnet.hed", _never, backend="sd-controlnet") as hed,
    ):
        pipe = controlnet_pipeline(base.obj, hed.obj)
        assert pipe.unet is base.obj.unet and pipe.controlnet.device.type == "cuda"


def _fill_gpu() -> list[torch.Tensor]:
    """Allocate GPU memory until none is left (halving the chunk down to 512 bytes)."""
    torch.cuda.empty_cache()
    hog: list[torch.Tensor] = []
    chunk = 1 << 30
    while chunk >= 512:
        try:
            hog.append(torch.empty(chunk, dtype=torch.uint8, device="cuda:0"))
        except torch.cuda.OutOfMemoryError:
            chunk //= 2
    return hog


def test_out_of_memory_is_a_503_and_the_pool_recovers(ctx: StoreToolContext) -> None:
    image = read_image_rgb(DATA / "dog_on_bench.png")
    mask = read_image_rgb(DATA / "dog_on_bench_mask.png")[..., 0] > 127
    backend = SdInpaintBackend(steps=2)
    backend.inpaint(ctx, image, mask)  # loaded and warm (cuBLAS/cuDNN handles exist)
    hog = _fill_gpu()
    try:
        with pytest.raises(ServiceUnavailable, match=r"out of (GPU )?memory") as caught:
            backend.inpaint(ctx, image, mask)
        assert caught.value.status == 503
    finally:
        del hog
        torch.cuda.empty_cache()
    out = backend.inpaint(ctx, image, mask)  # same pool, same model: usable again
    assert out.shape == image.shape
    assert [m.loads for m in ctx.pool.describe()] == [1]

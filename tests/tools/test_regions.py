"""The region hierarchy over HED edges, what pick.py reads from it, and the bounded cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from igpt_server import media
from igpt_tools import edges, pick, regions
from tests.helpers import DATA


@pytest.fixture(scope="module")
def tree() -> regions.Hierarchy:
    path = edges.weights_path()
    assert path is not None, edges.unavailable_reason()
    image = edges.fit(media.read_image_rgb(DATA / "dog_on_bench.png"), 256)
    return regions.build(edges.run_hed(edges.build_hed(path), image), image)


def test_leaves_cover_the_map_and_nodes_nest(tree: regions.Hierarchy) -> None:
    n = tree.leaf_count
    assert tree.leaves.shape == tree.edges.shape == (256, 256)
    assert tree.leaves.min() == 0 and tree.leaves.max() == n - 1 and n > 20
    assert tree.parent.shape == (2 * n - 1,) and tree.parent[tree.root] == -1
    assert tree.mask(tree.root).all()
    for node in range(n, 2 * n - 1, 7):
        left, right = tree.children[node]
        a, b = tree.mask(int(left)), tree.mask(int(right))
        assert not (a & b).any() and ((a | b) == tree.mask(node)).all()
        assert tree.area[node] == tree.mask(node).sum()
        assert tree.height[node] >= max(tree.height[left], tree.height[right])  # ultrametric


def test_outlines_add_up_when_regions_merge(tree: regions.Hierarchy) -> None:
    assert tree.outline_length[tree.root] == pytest.approx(0, abs=1e-6)
    for node in range(tree.leaf_count, tree.root, 11):
        chosen = tree.node_leaves(node)
        cut = chosen[tree.pair_a] != chosen[tree.pair_b]
        assert tree.outline_length[node] == pytest.approx(tree.pair_count[cut].sum())


def test_a_click_on_the_dog_picks_a_region_inside_the_dog(tree: regions.Hierarchy) -> None:
    reference = media.read_mask(DATA / "dog_on_bench_mask.png")[::2, ::2]
    chosen = pick.click(tree, [(125, 135)], [])
    mask = tree.masks(list(chosen.nodes))
    assert mask[135, 125] and (mask & reference).sum() > 0.85 * mask.sum() and mask.sum() > 0.5 * reference.sum()


def test_an_exclude_click_keeps_the_answer_off_it(tree: regions.Hierarchy) -> None:
    chosen = pick.click(tree, [(129, 88)], [(125, 140)])
    assert not tree.masks(list(chosen.nodes))[140, 125]


def test_the_cache_stays_within_its_bound(tree: regions.Hierarchy) -> None:
    cache = regions.RegionCache(max_bytes=int(2.5 * tree.nbytes))
    for index in range(5):
        cache.put(("s", f"image/{index}.png"), tree)
        assert cache.used_bytes() <= cache.max_bytes
    assert len(cache) == 2 and cache.get(("s", "image/4.png")) is tree and cache.get(("s", "image/0.png")) is None
    tiny = regions.RegionCache(max_bytes=10)
    tiny.put(("s", "x"), tree)
    assert len(tiny) == 0


def test_concurrent_first_uses_compute_once(tree: regions.Hierarchy) -> None:
    cache = regions.RegionCache()
    calls: list[int] = []
    gate = threading.Event()

    def compute() -> regions.Hierarchy:
        calls.append(1)
        gate.wait(1.0)
        return tree

    answers: list[bool] = []
    threads = [
        threading.Thread(target=lambda: answers.append(cache.get_or_compute(("s", "a"), compute)[1])) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert calls == [1] and answers == [False, False, False]
    assert cache.get_or_compute(("s", "a"), compute) == (tree, True)


def test_a_flat_map_is_one_region() -> None:
    flat = regions.build(np.zeros((20, 30), np.float32))
    assert flat.leaf_count == 1 and flat.mask(flat.root).all()
    assert pick.click(flat, [(5, 5)], []).nodes in ((), (0,))

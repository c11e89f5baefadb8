"""Geometry of pointing: gestures to masks, boxes and points; mask helpers.

Pure numpy/OpenCV. Masks are HxW ``bool`` arrays; boxes are XYXY floats in image pixels;
points are (x, y) in image pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

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

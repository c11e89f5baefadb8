"""What the ``track`` tool does to the tracked object in each frame.

Every effect takes a frame (HxWx3 uint8 RGB) and the object's mask at the frame's size (HxW
bool, already grown by :func:`cover`) and returns the edited frame:

* ``blur``: a strong Gaussian blur inside the mask, feathered at its edge (faces, plates);
* ``pixelate``: blocks of about a twelfth of the object's size inside the mask;
* ``remove``: the mask filled from its surroundings per frame (OpenCV's Telea fill). Honest
  quality note: a frame-wise fill on the embedded tier smears large objects and may flicker
  from frame to frame; it suits small objects on plain backgrounds. The full tier's
  inpainter is the better path where configured;
* ``cutout``: RGBA with the mask as alpha (the clip becomes webm/VP9 with transparency).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Effect = Literal["blur", "pixelate", "remove", "cutout"]

#: the mask grows by this share of the object's size (at least 2 px), so edges are covered
GROW = 0.04


def cover(mask: np.ndarray) -> np.ndarray:
    """``mask`` (HxW bool) grown by :data:`GROW` of its size: privacy edits must cover the edge."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask
    size = max(int(xs.max() - xs.min()), int(ys.max() - ys.min()))
    radius = max(2, round(GROW * size))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _size(mask: np.ndarray) -> int:
    ys, xs = np.nonzero(mask)
    return max(int(xs.max() - xs.min()), int(ys.max() - ys.min()), 1)


def _crop_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    y0, y1 = max(0, int(ys.min()) - margin), min(height, int(ys.max()) + 1 + margin)
    x0, x1 = max(0, int(xs.min()) - margin), min(width, int(xs.max()) + 1 + margin)
    return slice(y0, y1), slice(x0, x1)


def blur(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The object blurred beyond recognition (sigma a sixth of its size), edge feathered.

    Only a crop around the object is blurred, at reduced size (a Gaussian of sigma s equals
    one of sigma s/f on a copy shrunk f times, up to the resampling), so the cost does not
    grow with the frame or the blur.
    """
    sigma = max(4.0, _size(mask) / 6)
    box = _crop_box(mask, round(3 * sigma))
    crop, hole = frame[box], mask[box]
    factor = max(1.0, sigma / 3)
    small_size = (max(1, round(crop.shape[1] / factor)), max(1, round(crop.shape[0] / factor)))
    small = cv2.resize(crop, small_size, interpolation=cv2.INTER_AREA)
    blurred = cv2.resize(
        cv2.GaussianBlur(small, (0, 0), sigma / factor), crop.shape[1::-1], interpolation=cv2.INTER_LINEAR
    )
    alpha = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 2.0)[:, :, None]
    alpha = np.maximum(alpha, hole[:, :, None].astype(np.float32))
    out = frame.copy()
    out[box] = (crop * (1 - alpha) + blurred * alpha).round().astype(np.uint8)
    return out


def pixelate(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The object as coarse blocks (a twelfth of its size, at least 8 px)."""
    block = max(8, _size(mask) // 12)
    box = _crop_box(mask, block)
    crop, hole = frame[box], mask[box]
    height, width = hole.shape
    small = cv2.resize(crop, (max(1, width // block), max(1, height // block)), interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    out = frame.copy()
    out[box][hole] = blocks[hole]
    return out


def remove(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The object filled from its surroundings (Telea, on a crop around it)."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    margin = max(16, _size(mask) // 4)
    x0, y0 = max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin)
    x1, y1 = min(width, int(xs.max()) + 1 + margin), min(height, int(ys.max()) + 1 + margin)
    out = frame.copy()
    crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
    hole = mask[y0:y1, x0:x1].astype(np.uint8) * 255
    out[y0:y1, x0:x1] = cv2.inpaint(crop, hole, 5, cv2.INPAINT_TELEA)
    return out


def cutout(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 RGBA: the frame with the object opaque and everything else transparent."""
    alpha = mask.astype(np.uint8) * 255
    return np.dstack([frame, alpha])


def apply(effect: Effect, frame: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``frame`` with ``effect`` on ``mask``; a frame without a mask is returned unchanged
    (RGBA fully transparent for ``cutout``)."""
    if mask is None or not mask.any():
        if effect == "cutout":
            return np.dstack([frame, np.zeros(frame.shape[:2], np.uint8)])
        return frame
    if effect == "cutout":
        return cutout(frame, mask)
    grown = cover(mask)
    if effect == "blur":
        return blur(frame, grown)
    if effect == "pixelate":
        return pixelate(frame, grown)
    return remove(frame, grown)

"""Geometry of pointing: gestures to masks and boxes, mask algebra, bounds, moving masks."""

from __future__ import annotations

import numpy as np
import pytest

from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.perception.gestures import Box, Click, ClickPoint, Drag, Stroke, check_inside


def square(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# rasterising ---------------------------------------------------------------------------


def test_box_mask_covers_the_box_and_clips_to_the_image() -> None:
    mask = geometry.box_mask(Box(x0=2, y0=3, x1=6, y1=5), 10, 10)
    assert mask.sum() == 4 * 2 and mask[3:5, 2:6].all()
    clipped = geometry.box_mask((-5.0, -5.0, 3.0, 100.0), 10, 10)
    assert clipped.shape == (10, 10) and clipped.sum() == 3 * 10


def test_stroke_is_a_band_of_its_width_along_the_polyline() -> None:
    stroke = Stroke(points=[(10, 50), (90, 50)], width=10)
    mask = geometry.rasterize_stroke(stroke, 100, 100)
    rows = np.flatnonzero(mask[:, 50])
    assert 9 <= rows.size <= 11 and rows.min() >= 44 and rows.max() <= 56
    assert mask[50, 10:91].all() and not mask[50, :3].any() and not mask[50, 97:].any()


def test_single_point_stroke_is_a_dot() -> None:
    mask = geometry.rasterize_stroke(Stroke(points=[(20, 20)], width=8), 40, 40)
    assert mask[20, 20] and 20 < mask.sum() < 80
    assert geometry.mask_bbox(mask) == pytest.approx((16, 16, 25, 25), abs=1)


def test_strokes_unite() -> None:
    a = Stroke(points=[(0, 5), (30, 5)], width=2)
    b = Stroke(points=[(5, 0), (5, 30)], width=2)
    both = geometry.rasterize_strokes([a, b], 30, 30)
    assert (both == (geometry.rasterize_stroke(a, 30, 30) | geometry.rasterize_stroke(b, 30, 30))).all()


def test_click_region_is_a_disc_around_include_points_only() -> None:
    click = Click(points=[ClickPoint(x=10, y=10, label=1), ClickPoint(x=30, y=30, label=0)])
    region = geometry.gesture_region(click, 40, 40)
    assert region[10, 10] and not region[30, 30]
    radius = geometry.CLICK_RADIUS
    assert abs(region.sum() - np.pi * radius**2) < 0.3 * np.pi * radius**2


def test_gesture_box_of_each_gesture() -> None:
    assert geometry.gesture_box(Box(x0=1, y0=2, x1=3, y1=4)) == (1, 2, 3, 4)
    click = Click(points=[ClickPoint(x=5, y=9), ClickPoint(x=2, y=4), ClickPoint(x=50, y=50, label=0)])
    assert geometry.gesture_box(click) == (2, 4, 5, 9)
    assert geometry.gesture_box(Stroke(points=[(10, 10), (20, 30)], width=4)) == (8, 8, 22, 32)
    assert geometry.gesture_box(Drag(start=(7, 1), end=(3, 5))) == (3, 1, 7, 5)


# unions and other mask algebra ------------------------------------------------------------


def test_union_intersect_subtract_iou() -> None:
    a = square(10, 10, 0, 0, 6, 10)
    b = square(10, 10, 4, 0, 10, 10)
    assert geometry.union(a, b).all()
    assert geometry.intersect(a, b).sum() == 20
    assert geometry.subtract(a, b).sum() == 40 and not geometry.subtract(a, b)[:, 4:].any()
    assert geometry.iou(a, b) == pytest.approx(20 / 100)
    assert geometry.iou(a, a) == 1.0
    empty = np.zeros((10, 10), bool)
    assert geometry.iou(empty, empty) == 1.0 and geometry.iou(a, empty) == 0.0


def test_masks_of_different_sizes_do_not_combine() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        geometry.union(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="differ in size"):
        geometry.iou(np.zeros((4, 4), bool), np.zeros((5, 4), bool))


def test_components_touching_keeps_what_the_seed_touches() -> None:
    mask = square(20, 20, 0, 0, 5, 5) | square(20, 20, 10, 10, 20, 20)
    seeds = np.zeros_like(mask)
    seeds[2, 2] = True
    assert (geometry.components_touching(mask, seeds) == square(20, 20, 0, 0, 5, 5)).all()
    # no seed on the mask: the largest component
    assert (geometry.components_touching(mask, np.zeros_like(mask)) == square(20, 20, 10, 10, 20, 20)).all()


def test_fill_holes_fills_enclosed_background_only() -> None:
    ring = square(20, 20, 2, 2, 18, 18) & ~square(20, 20, 6, 6, 14, 14)
    notch = square(20, 20, 0, 0, 20, 10) & ~square(20, 20, 8, 0, 12, 4)  # open to the border
    assert (geometry.fill_holes(ring) == square(20, 20, 2, 2, 18, 18)).all()
    assert (geometry.fill_holes(ring, max_area=10) == ring).all()
    assert (geometry.fill_holes(notch) == notch).all()


def test_bbox_centroid_and_distance() -> None:
    mask = square(50, 40, 10, 20, 20, 30)
    assert geometry.mask_bbox(mask) == (10, 20, 20, 30)
    assert geometry.mask_centroid(mask) == pytest.approx((15.0, 25.0))
    assert geometry.distance_to_mask(mask, 15, 25) == 0
    assert geometry.distance_to_mask(mask, 25.5, 25.5) == pytest.approx(6.0)
    assert geometry.mask_bbox(np.zeros((3, 3), bool)) is None
    assert geometry.mask_centroid(np.zeros((3, 3), bool)) is None


def test_dilation_grows_with_the_object_within_bounds() -> None:
    small = square(400, 400, 100, 100, 110, 110)
    large = square(400, 400, 0, 0, 400, 400)
    assert geometry.dilation_for(small) == 8 and geometry.dilation_for(large) == 15
    assert geometry.dilate(small, 3).sum() > small.sum()


# coordinate bounds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "gesture",
    [
        Click(points=[ClickPoint(x=0, y=0)]),
        Click(points=[ClickPoint(x=100, y=50)]),
        Box(x0=0, y0=0, x1=100, y1=50),
        Stroke(points=[(0, 25), (100, 25)]),
        Drag(start=(1, 1), end=(99, 49)),
    ],
)
def test_gestures_on_the_image_edges_are_inside(gesture: Click | Box | Stroke | Drag) -> None:
    check_inside(gesture, 100, 50)


@pytest.mark.parametrize(
    "gesture",
    [
        Click(points=[ClickPoint(x=100.5, y=10)]),
        Click(points=[ClickPoint(x=10, y=10), ClickPoint(x=10, y=-1, label=0)]),
        Box(x0=-3, y0=0, x1=10, y1=10),
        Stroke(points=[(10, 10), (10, 51)]),
        Drag(start=(10, 10), end=(200, 10)),
    ],
)
def test_gestures_leaving_the_image_are_rejected(gesture: Click | Box | Stroke | Drag) -> None:
    with pytest.raises(InvalidInput, match="outside the 100x50 image") as info:
        check_inside(gesture, 100, 50)
    assert info.value.status == 422


def test_clip_and_expand_box_stay_in_the_image() -> None:
    assert geometry.clip_box((-4.5, 2.2, 7.1, 99.0), 10, 10) == (0, 2, 8, 10)
    assert geometry.clip_box((20.0, 20.0, 30.0, 30.0), 10, 10) == (10, 10, 10, 10)
    assert geometry.expand_box((4, 4, 6, 6), 3, 10, 8) == (1, 1, 8, 9)


# moving ---------------------------------------------------------------------------------


def test_transform_mask_shifts_by_the_vector() -> None:
    mask = square(100, 100, 20, 30, 40, 60)
    moved = geometry.transform_mask(mask, 25, -10)
    assert moved.sum() == mask.sum()
    assert (moved == square(100, 100, 45, 20, 65, 50)).all()


def test_transform_mask_scales_about_the_centroid_and_clips() -> None:
    mask = square(100, 100, 40, 40, 60, 60)
    bigger = geometry.transform_mask(mask, 0, 0, 1.5)
    assert geometry.mask_centroid(bigger) == pytest.approx(geometry.mask_centroid(mask), abs=0.6)
    assert bigger.sum() == pytest.approx(mask.sum() * 2.25, rel=0.05)
    off = geometry.transform_mask(mask, 50, 0)
    assert off.sum() == 10 * 20 and off[:, 90:].any()


def test_warp_moves_image_content_with_the_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    matrix = geometry.move_matrix((20.0, 20.0), 7, 3, 1.0)
    moved = geometry.warp(image, matrix, 40, 50)
    assert (moved[3:, 7:] == image[:-3, :-7]).all()


def test_resize_mask_keeps_shape_of_the_region() -> None:
    mask = square(100, 100, 20, 20, 60, 60)
    small = geometry.resize_mask(mask, 50, 50)
    assert (small == square(50, 50, 10, 10, 30, 30)).all()
    assert (geometry.resize_mask(small, 100, 100) == mask).all()

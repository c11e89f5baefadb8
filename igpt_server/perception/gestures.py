"""Gesture models: how a person points at an image. Coordinates are image pixels.

``x`` grows to the right and ``y`` downwards, from (0, 0) at the top-left pixel's corner to
(width, height). The canvas page converts from display pixels before sending. Pydantic
checks the shape (non-degenerate box, bounded point counts, finite numbers); whether a
gesture lies inside a given image is checked by :func:`check_inside`, which needs the size.

JSON forms (discriminated by ``type``)::

    {"type": "click", "points": [{"x": 500, "y": 375, "label": 1}]}   label 1 include, 0 exclude
    {"type": "box", "x0": 425, "y0": 600, "x1": 700, "y1": 875}          XYXY
    {"type": "stroke", "points": [[10, 20], [30, 40]], "width": 12}      polyline, brush width px
    {"type": "drag", "start": [200, 300], "end": [260, 310]}
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from igpt_server.errors import InvalidInput

MAX_CLICK_POINTS = 64
MAX_STROKE_POINTS = 4096
MAX_STROKE_WIDTH = 512.0


def _a_number(value: Any) -> Any:
    """Numbers are numbers: ``false`` or ``"12"`` is not taken for a coordinate or a width."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError("must be a number, not a boolean or a string")
    return value


Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6), BeforeValidator(_a_number)]
XY = tuple[Coordinate, Coordinate]


def _type_is_required(schema: dict[str, Any], cls: type) -> None:
    """In the JSON schema, ``type`` is required: the union is discriminated by it (a default
    only serves Python callers that build a gesture directly)."""
    if "type" in schema.get("properties", {}):
        schema["required"] = ["type", *(name for name in schema.get("required", []) if name != "type")]


class _Gesture(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_type_is_required)


class ClickPoint(_Gesture):
    x: Coordinate
    y: Coordinate
    label: Literal[0, 1] = 1

    @field_validator("label", mode="before")
    @classmethod
    def _label_is_an_integer(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("label is the integer 1 (include) or 0 (exclude)")
        return value


class Click(_Gesture):
    """One or more points; label 1 marks the object, 0 marks what is not the object."""

    type: Literal["click"] = "click"
    points: list[ClickPoint] = Field(min_length=1, max_length=MAX_CLICK_POINTS)

    @model_validator(mode="after")
    def _needs_an_include_point(self) -> Click:
        if not any(p.label == 1 for p in self.points):
            raise ValueError("a click needs at least one include point (label 1)")
        return self


class Box(_Gesture):
    """An axis-aligned box, XYXY in image pixels, x0 < x1 and y0 < y1."""

    type: Literal["box"] = "box"
    x0: Coordinate
    y0: Coordinate
    x1: Coordinate
    y1: Coordinate

    @model_validator(mode="after")
    def _not_degenerate(self) -> Box:
        if self.x1 - self.x0 < 1 or self.y1 - self.y0 < 1:
            raise ValueError(
                f"the box ({self.x0}, {self.y0})-({self.x1}, {self.y1}) has no area; "
                "x1 must exceed x0 and y1 must exceed y0 by at least one pixel"
            )
        return self

    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


class Stroke(_Gesture):
    """A brush stroke: a polyline of at least one point, painted ``width`` pixels wide."""

    type: Literal["stroke"] = "stroke"
    points: list[XY] = Field(min_length=1, max_length=MAX_STROKE_POINTS)
    width: Annotated[float, BeforeValidator(_a_number)] = Field(12.0, gt=0, le=MAX_STROKE_WIDTH)

    def length(self) -> float:
        return sum(math.dist(a, b) for a, b in zip(self.points, self.points[1:], strict=False))


class Drag(_Gesture):
    """A drag from ``start`` to ``end``."""

    type: Literal["drag"] = "drag"
    start: XY
    end: XY

    def vector(self) -> tuple[float, float]:
        return (self.end[0] - self.start[0], self.end[1] - self.start[1])


Gesture = Annotated[Click | Box | Stroke | Drag, Field(discriminator="type")]
GestureType = Literal["click", "box", "stroke", "drag"]


def gesture_points(gesture: Click | Box | Stroke | Drag) -> list[tuple[float, float]]:
    """Every coordinate the gesture names, for bounds checks."""
    if isinstance(gesture, Click):
        return [(p.x, p.y) for p in gesture.points]
    if isinstance(gesture, Box):
        return [(gesture.x0, gesture.y0), (gesture.x1, gesture.y1)]
    if isinstance(gesture, Stroke):
        return [tuple(p) for p in gesture.points]  # type: ignore[misc]
    return [tuple(gesture.start), tuple(gesture.end)]  # type: ignore[list-item]


def check_inside(gesture: Click | Box | Stroke | Drag, width: int, height: int) -> None:
    """Raise :class:`InvalidInput` (422) unless every coordinate lies in [0, w] x [0, h]."""
    for x, y in gesture_points(gesture):
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(
                f"the {gesture.type} point ({x:g}, {y:g}) lies outside the {width}x{height} "
                "image; coordinates are image pixels from (0, 0) to (width, height)",
                code="gesture_outside_image",
            )

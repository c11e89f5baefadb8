"""Crop: cut an image down to the selection's bounding box plus a margin.

Decisions:

* ``margin`` is a fraction of the selection box's longer side (0.1 = 10 %), not pixels, so
  "crop to the dog" frames a small and a large dog alike; 0 crops tight. The margin is
  clipped by the image's edges.
* ``aspect`` (width / height, or "W:H" such as "16:9") widens the short side of the box about
  its centre, shifted to stay inside the image. The selection is never cut off: where the
  image is too small for the ratio, the box keeps the selection and the ratio comes out as
  close as the image allows (``data["aspect_met"]`` is false).
* Without ``mask_path`` the active selection of ``image_path`` is used.
* The cropped image becomes the active image; the selection cropped with it stays selected
  (a mask of the new image), so "crop to the dog, then blur the background" keeps the dog.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator

from igpt_server.perception import geometry
from igpt_server.store import ArtifactKind
from igpt_server.tooling import progress
from igpt_server.tooling.interface import (
    ImagePath,
    MaskPath,
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)
from igpt_tools.extract import OpenCvBackend
from igpt_tools.selection import active_selection

FloatBox = tuple[float, float, float, float]


class CropArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath | None = Field(None, description="the selection to crop to; default: the active selection")
    margin: float = Field(
        0.1,
        ge=0.0,
        le=2.0,
        description="space kept around the selection, as a fraction of its longer side (0.1 = 10 %)",
    )
    aspect: float | None = Field(
        None, ge=0.1, le=10.0, description="width / height of the result (1 = square; '16:9' works too); default: free"
    )

    @field_validator("aspect", mode="before")
    @classmethod
    def _ratio(cls, value: object) -> object:
        """Accept "W:H" and "W/H" strings (e.g. "16:9") besides numbers."""
        if isinstance(value, str):
            for sep in (":", "/", "x"):
                if sep in value:
                    left, _, right = value.partition(sep)
                    try:
                        return float(left) / float(right)
                    except (ValueError, ZeroDivisionError):
                        raise ValueError(f"aspect {value!r} is not a ratio like '16:9' or a number like 1.5") from None
        return value


def crop_box(mask: np.ndarray, margin: float, aspect: float | None = None) -> tuple[geometry.IntBox, bool]:
    """Integer XYXY box (x1, y1 exclusive) around the HxW bool ``mask`` grown by ``margin``
    (a fraction of the mask box's longer side), widened to ``aspect`` (width / height) when
    given, inside the image; and whether the aspect was met (True when none was asked).

    The mask must not be empty.
    """
    bbox = geometry.mask_bbox(mask)
    if bbox is None:
        raise ValueError("cannot crop to an empty mask")
    height, width = mask.shape
    pad = margin * max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    grown = geometry.expand_box(bbox, pad, height, width)
    if aspect is None:
        return grown, True
    x0, y0, x1, y1 = _widen_to(grown, aspect, height, width)
    # met within the rounding of both sides to whole pixels
    return (x0, y0, x1, y1), abs((x1 - x0) - aspect * (y1 - y0)) <= 1.0 + aspect


def _widen_to(box: geometry.IntBox, aspect: float, height: int, width: int) -> geometry.IntBox:
    """``box`` widened along its short side to width / height = ``aspect`` (capped by the
    image), centred on the box and shifted to lie inside the image."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    new_w, new_h = (max(w, h * aspect), h) if w / h < aspect else (w, max(h, w / aspect))
    new_w, new_h = min(new_w, width), min(new_h, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, right = _shift_inside(cx - new_w / 2, new_w, width)
    top, bottom = _shift_inside(cy - new_h / 2, new_h, height)
    # rounding to whole pixels must never cut into the box
    return min(left, x0), min(top, y0), max(right, x1), max(bottom, y1)


def _shift_inside(start: float, size: float, limit: int) -> tuple[int, int]:
    """(start, end) integers of a span of ``size`` near ``start``, moved to lie in [0, limit]."""
    length = min(limit, max(1, round(size)))
    first = min(max(math.floor(start + 0.5), 0), limit - length)
    return first, first + length


class CropTool(Tool):
    name = "crop"
    description = (
        "Crop an image to the selected object: give image_path and mask_path (default: the selection); "
        "margin is the space kept around it as a fraction of its size (default 0.1); aspect is an "
        "optional width/height ratio (1 = square). The cropped image becomes the active image and the "
        "object stays selected. Answers 'crop to the dog', 'zoom in on this', 'frame it'."
    )
    args_model = CropArgs
    words = ToolWords(
        verbs=("crop", "trim", "cut down", "crop to", "crop out", "zoom in on", "zoom in", "frame", "close in on"),
        nouns=("crop", "close-up", "closeup", "thumbnail"),
        examples=("crop to the dog", "zoom in on this", "crop it square", "make a close-up of the truck"),
    )

    def run(self, args: CropArgs, ctx: ToolContext, backend: OpenCvBackend) -> ToolOutput:
        mask_path = args.mask_path or active_selection(ctx, args.image_path)
        image = ctx.read_image(args.image_path)
        mask = ctx.read_mask(mask_path)
        geometry.check_mask_for(image, mask, args.image_path, mask_path)
        progress.check_cancelled()
        (x0, y0, x1, y1), aspect_met = crop_box(mask, args.margin, args.aspect)
        cropped = np.ascontiguousarray(image[y0:y1, x0:x1])
        selection = np.ascontiguousarray(mask[y0:y1, x0:x1])
        w, h = x1 - x0, y1 - y0
        text = f"Cropped to the selection with a {round(100 * args.margin)} % margin: {w}x{h} pixels."
        if not aspect_met:
            text += f" The image is too small for a {args.aspect:g} ratio around the selection; this is the closest."
        new = NewArtifact(
            kind=ArtifactKind.image, content=cropped, parent=args.image_path, stem="cropped", role="image"
        )
        kept = NewArtifact(
            kind=ArtifactKind.mask, content=selection, parent="@0", stem="cropped_mask", role="selection"
        )
        data = {"box": [x0, y0, x1, y1], "width": w, "height": h, "aspect_met": aspect_met, "mask_path": mask_path}
        return ToolOutput(text=text, artifacts=[new, kept], data=data)

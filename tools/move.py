"""Move: shift and/or resize the selected object inside its image.

The object (the mask's pixels) is lifted off, its place is filled with background by an
inpaint backend (the same backends as ``remove``: the mask is grown by 8-15 px first), and it
is pasted back scaled by ``scale`` about its centroid and shifted by (``dx``, ``dy``) pixels,
with a feathered edge. "Make it bigger" is ``scale=1.3`` with ``dx=dy=0``.

The moved object's mask, :func:`moved_mask` of the source mask, is a selection of the new
image; the new image's ``meta`` names the source mask and the move so callers (the gesture
endpoint) can store it (a tool's artifacts cannot name each other as parents).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.store import ArtifactKind
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
from igpt_tools.compose import blend_feather, soft_alpha
from igpt_tools.remove import OpenCvInpaintBackend
from igpt_tools.selection import active_selection

MAX_SHIFT = 100_000.0


class MoveArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath | None = Field(None, description="the object's mask; default: the active selection")
    dx: float = Field(0.0, ge=-MAX_SHIFT, le=MAX_SHIFT, description="pixels to move right (negative: left)")
    dy: float = Field(0.0, ge=-MAX_SHIFT, le=MAX_SHIFT, description="pixels to move down (negative: up)")
    scale: float = Field(1.0, ge=0.05, le=10.0, description="size factor about the object's centre; 1.3 = 30 % bigger")


def moved_mask(mask: np.ndarray, dx: float, dy: float, scale: float) -> np.ndarray:
    """HxW bool: where the object of ``mask`` lies after the move (clipped to the image).

    This is :func:`geometry.transform_mask`."""
    return geometry.transform_mask(mask, dx, dy, scale)


def paste_moved(
    background: np.ndarray, image: np.ndarray, mask: np.ndarray, dx: float, dy: float, scale: float
) -> np.ndarray:
    """HxWx3 uint8: the object (``image`` under ``mask``) moved onto ``background``."""
    height, width = mask.shape
    centre = geometry.mask_centroid(mask)
    if centre is None:
        return background.copy()
    matrix = geometry.move_matrix(centre, dx, dy, scale)
    layer = geometry.warp(image, matrix, height, width)
    alpha = geometry.warp(soft_alpha(mask.astype(np.float32)), matrix, height, width)
    return blend_feather(background, layer, np.clip(alpha, 0.0, 1.0))


class MoveTool(Tool):
    name = "move"
    description = (
        "Move or resize the selected object inside its image: give image_path, mask_path (default: "
        "the selection), dx and dy in pixels (right and down are positive) and scale (1.3 = 30 % "
        "bigger, 0.7 = smaller). The old place is filled with background. Answers 'move it left', "
        "'make it bigger', 'drag the dog to the right'."
    )
    args_model = MoveArgs
    words = ToolWords(
        verbs=(
            "move",
            "drag",
            "shift",
            "slide",
            "push",
            "nudge",
            "relocate",
            "reposition",
            "put * over",
            "scale",
            "resize",
            "enlarge",
            "shrink",
            "make * bigger",
            "make * smaller",
        ),
        examples=("move it to the left", "make the dog bigger", "shift this up a bit"),
        senses=("move.v.02", "shift.v.02", "enlarge.v.01", "blow_up.v.02", "shrink.v.03"),
        roles=(("dx", "offset"), ("dy", "offset"), ("scale", "scale")),
    )
    gestures = ("drag",)

    def run(self, args: MoveArgs, ctx: ToolContext, backend: OpenCvInpaintBackend) -> ToolOutput:
        mask_path = args.mask_path or active_selection(ctx, args.image_path)
        image = ctx.read_image(args.image_path)
        mask = ctx.read_mask(mask_path)
        geometry.check_mask_for(image, mask, args.image_path, mask_path)
        if args.dx == 0 and args.dy == 0 and args.scale == 1.0:
            raise InvalidInput("nothing to move: give dx and dy (pixels) or a scale other than 1", code="no_move")
        target = moved_mask(mask, args.dx, args.dy, args.scale)
        if not target.any():
            raise InvalidInput(
                f"moved by ({args.dx:g}, {args.dy:g}) at scale {args.scale:g} the object would leave the "
                f"{image.shape[1]}x{image.shape[0]} image entirely; use a smaller shift",
                code="moved_outside",
            )
        hole = geometry.dilate(mask, geometry.dilation_for(mask))
        background = backend.inpaint(ctx, image, hole)
        result = paste_moved(background, image, mask, args.dx, args.dy, args.scale)
        before, after = geometry.mask_centroid(mask), geometry.mask_centroid(target)
        move = {"mask_path": mask_path, "dx": args.dx, "dy": args.dy, "scale": args.scale}
        text = (
            f"Moved the object of {mask_path} by ({args.dx:g}, {args.dy:g}) px"
            f"{f' and scaled it by {args.scale:g}' if args.scale != 1.0 else ''}; its old place was filled."
        )
        new = NewArtifact(
            kind=ArtifactKind.image,
            content=result,
            parent=args.image_path,
            stem="moved",
            role="image",
            meta={"moved": move},
        )
        selection = NewArtifact(
            kind=ArtifactKind.mask, content=target, parent="@0", stem="moved_mask", role="selection"
        )
        data = {**move, "centre_from": before, "centre_to": after, "moved_box": geometry.mask_bbox(target)}
        return ToolOutput(text=text, artifacts=[new, selection], data=data)

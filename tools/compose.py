"""Compose: place cut-out materials on a background image or on a blank canvas.

Each placement names a material (an RGBA cut-out from ``extract``), where its top-left corner
goes (``x``, ``y`` in canvas pixels; it may hang over the canvas's edge, that part is
dropped) and a ``scale``. Blending is ``feather`` (the cut-out's edge softened over a couple of
pixels, colours kept) or ``seamless`` (OpenCV's Poisson cloning: the colours adapt to the
background; better for patches of texture than for objects).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import (
    ImagePath,
    MaterialPath,
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)
from igpt_tools.extract import OpenCvBackend

Blend = Literal["feather", "seamless"]
MAX_CANVAS_SIDE = 8192


class Placement(ToolArgs):
    material_path: MaterialPath
    x: float = Field(0.0, ge=-1e5, le=1e5, description="canvas x of the material's left edge, pixels")
    y: float = Field(0.0, ge=-1e5, le=1e5, description="canvas y of the material's top edge, pixels")
    scale: float = Field(1.0, gt=0.01, le=20.0, description="size factor of the material")


class ComposeArgs(ToolArgs):
    materials: list[Placement] = Field(min_length=1, max_length=16, description="cut-outs to place, bottom first")
    image_path: ImagePath | None = Field(None, description="background image; omit to use a blank canvas")
    width: int | None = Field(None, ge=1, le=MAX_CANVAS_SIDE, description="blank canvas width (no image_path)")
    height: int | None = Field(None, ge=1, le=MAX_CANVAS_SIDE, description="blank canvas height (no image_path)")
    blend: Blend = Field("feather", description="feather: soft edge, colours kept; seamless: Poisson blending")

    @model_validator(mode="after")
    def _one_background(self) -> ComposeArgs:
        blank = self.width is not None or self.height is not None
        if self.image_path is not None and blank:
            raise ValueError("give either image_path or width and height (a blank canvas), not both")
        if self.image_path is None and (self.width is None or self.height is None):
            raise ValueError("give image_path, or width and height for a blank canvas")
        return self


def soft_alpha(alpha: np.ndarray, pixels: int = 2) -> np.ndarray:
    """HxW float32 in [0, 1]: an alpha channel (uint8 or float) softened inward over about
    ``pixels``, so that no pixel outside the cut-out gets weight."""
    a = alpha.astype(np.float32) / (255.0 if alpha.dtype == np.uint8 else 1.0)
    if pixels <= 0:
        return a
    size = 2 * pixels + 1
    return (cv2.GaussianBlur(a, (size, size), pixels / 2.0) * a).clip(0.0, 1.0)


def blend_feather(canvas: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """HxWx3 uint8: ``layer`` (HxWx3) over ``canvas`` (HxWx3) with ``alpha`` (HxW float 0..1)."""
    a = alpha[:, :, None]
    out = canvas.astype(np.float32) * (1.0 - a) + layer.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def blend_seamless(canvas: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """HxWx3 uint8: Poisson blending of ``layer`` into ``canvas`` where ``alpha`` > 0.5.

    The canvas is padded by reflection first, so regions touching its edge clone as well.
    """
    mask = alpha > 0.5
    bbox = geometry.mask_bbox(mask)
    if bbox is None:
        return canvas.copy()
    x0, y0, x1, y1 = bbox
    pad = 4
    src = cv2.copyMakeBorder(layer[y0:y1, x0:x1], pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    src_mask = np.zeros(src.shape[:2], np.uint8)
    src_mask[pad:-pad, pad:-pad] = mask[y0:y1, x0:x1] * 255
    border = max(y1 - y0, x1 - x0) + 2 * pad
    big = cv2.copyMakeBorder(canvas, border, border, border, border, cv2.BORDER_REFLECT)
    w, h = src.shape[1], src.shape[0]
    # OpenCV centres the mask's bounding box on the point; the box is the padded source here
    centre = (border + x0 - pad + w // 2, border + y0 - pad + h // 2)
    cloned = cv2.seamlessClone(src[:, :, ::-1].copy(), big[:, :, ::-1].copy(), src_mask, centre, cv2.NORMAL_CLONE)
    return np.ascontiguousarray(cloned[border:-border, border:-border, ::-1])


def place(
    canvas: np.ndarray, rgba: np.ndarray, x: float, y: float, scale: float, blend: Blend
) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``rgba`` (hxwx4 uint8) scaled by ``scale`` with its top-left at (x, y) onto
    ``canvas`` (HxWx3 uint8). Returns the new canvas and the HxW bool mask of what landed on it."""
    height, width = canvas.shape[:2]
    h = max(1, round(rgba.shape[0] * scale))
    w = max(1, round(rgba.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(rgba, (w, h), interpolation=interp) if (h, w) != rgba.shape[:2] else rgba
    left, top = round(x), round(y)
    cx0, cy0, cx1, cy1 = max(left, 0), max(top, 0), min(left + w, width), min(top + h, height)
    if cx0 >= cx1 or cy0 >= cy1:
        raise InvalidInput(
            f"a {w}x{h} material at ({x:g}, {y:g}) lands wholly outside the {width}x{height} canvas; "
            "x and y place its top-left corner in canvas pixels",
            code="outside_canvas",
        )
    layer = np.zeros_like(canvas)
    alpha = np.zeros((height, width), np.float32)
    part = scaled[cy0 - top : cy1 - top, cx0 - left : cx1 - left]
    layer[cy0:cy1, cx0:cx1] = part[:, :, :3]
    alpha[cy0:cy1, cx0:cx1] = soft_alpha(part[:, :, 3])
    hard = np.zeros((height, width), bool)
    hard[cy0:cy1, cx0:cx1] = part[:, :, 3] > 127
    out = blend_seamless(canvas, layer, alpha) if blend == "seamless" else blend_feather(canvas, layer, alpha)
    return out, hard


class ComposeTool(Tool):
    name = "compose"
    description = (
        "Compose a picture from cut-out materials (see extract): place each material at x, y (its "
        "top-left corner, pixels) with a scale, on the background image_path or on a blank white "
        "canvas of width x height. Answers 'put the dog on this picture', 'paste it here'."
    )
    args_model = ComposeArgs
    words = ToolWords(
        verbs=("paste", "compose", "insert", "place", "stick", "put * back", "drop * in"),
        nouns=("collage", "composite"),
        examples=("paste the cut-out here", "put the dog back on the left"),
    )

    def run(self, args: ComposeArgs, ctx: ToolContext, backend: OpenCvBackend) -> ToolOutput:
        if args.image_path is not None:
            canvas = ctx.read_image(args.image_path)
        else:
            canvas = np.full((args.height or 1, args.width or 1, 3), 255, np.uint8)
        placed = []
        for item in args.materials:
            ctx.artifact(item.material_path, (ArtifactKind.material,))
            canvas, hard = place(canvas, ctx.read_rgba(item.material_path), item.x, item.y, item.scale, args.blend)
            placed.append({"material_path": item.material_path, "box": geometry.mask_bbox(hard)})
        parent = args.image_path or args.materials[0].material_path
        where = f"on {args.image_path}" if args.image_path else f"on a blank {canvas.shape[1]}x{canvas.shape[0]} canvas"
        text = f"Placed {len(args.materials)} material(s) {where} ({args.blend} blending)."
        new = NewArtifact(kind=ArtifactKind.image, content=canvas, parent=parent, stem="composed", role="image")
        return ToolOutput(text=text, artifacts=[new], data={"placed": placed})

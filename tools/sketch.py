"""Sketch: store brush strokes as a sketch artifact (white strokes on black, the image's size).

A sketch is what generation from strokes (scribble ControlNet, full tier) draws from. With
``base_sketch_path`` the strokes are added to an earlier sketch of the same image.
"""

from __future__ import annotations

from pydantic import Field

from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.perception.gestures import Stroke, check_inside
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import (
    ImagePath,
    NewArtifact,
    SketchPath,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)
from igpt_tools.extract import OpenCvBackend


class SketchArgs(ToolArgs):
    image_path: ImagePath
    strokes: list[Stroke] = Field(min_length=1, max_length=256, description="brush strokes in image pixels")
    base_sketch_path: SketchPath | None = Field(None, description="an earlier sketch of this image to draw on")


class SketchTool(Tool):
    name = "sketch"
    description = (
        "Store brush strokes drawn on an image as a sketch (white lines on black, the image's size) "
        "for generating a picture from it. Give image_path and strokes; base_sketch_path adds to an "
        "earlier sketch."
    )
    args_model = SketchArgs
    words = ToolWords(
        verbs=("scribble", "doodle", "draw strokes"),
        nouns=("sketch", "strokes"),
        examples=("keep my strokes as a sketch",),
    )
    gestures = ("stroke",)

    def run(self, args: SketchArgs, ctx: ToolContext, backend: OpenCvBackend) -> ToolOutput:
        artifact = ctx.artifact(args.image_path)
        width, height = artifact.width or 0, artifact.height or 0
        for stroke in args.strokes:
            check_inside(stroke, width, height)
        canvas = geometry.rasterize_strokes(args.strokes, height, width)
        if args.base_sketch_path is not None:
            base = ctx.read_mask(args.base_sketch_path)
            if base.shape != canvas.shape:
                raise InvalidInput(
                    f"sketch {args.base_sketch_path!r} is {base.shape[1]}x{base.shape[0]} but {args.image_path!r} "
                    f"is {width}x{height}; draw on a sketch of this image",
                    code="sketch_size_mismatch",
                )
            canvas = geometry.union(base, canvas)
        text = (
            f"Stored {len(args.strokes)} stroke(s) on {args.image_path} as a {width}x{height} sketch"
            f"{f' (added to {args.base_sketch_path})' if args.base_sketch_path else ''}."
        )
        new = NewArtifact(kind=ArtifactKind.sketch, content=canvas, parent=args.image_path, stem="sketch")
        return ToolOutput(text=text, artifacts=[new], data={"strokes": len(args.strokes), "pixels": int(canvas.sum())})

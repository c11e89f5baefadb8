"""Small real tools and a services factory for the controller's tests.

The tools work on real pixels with numpy only, so routing can be tested without the heavy
tools: ``segment`` (a box or the gesture's region, grown to a square around a click),
``remove`` (fills the selection with the mean colour of the rest), ``flip`` (mirrors an
image), ``move`` (shifts and scales the selected pixels), ``replace`` (its backend needs a
package that is not installed, so the registry marks it unavailable), ``broken`` (raises).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from igpt_server.controller import ChatLLM, Controller
from igpt_server.models.pool import ModelPool
from igpt_server.perception.geometry import box_mask, gesture_region
from igpt_server.perception.gestures import Box, Click, Stroke
from igpt_server.settings import Settings
from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.tooling.interface import (
    Backend,
    ImagePath,
    MaskPath,
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
)
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import ToolRunner

DATA = Path(__file__).parent / "data"


class NumpyBackend(Backend):
    name = "numpy"


class MissingBackend(Backend):
    name = "missing"
    requires = ("a_package_that_is_not_installed",)
    extra = "full"


class SegmentArgs(ToolArgs):
    image_path: ImagePath
    gesture: Click | Box | Stroke = Field(discriminator="type")


class SquareSegmentTool(Tool):
    name = "segment"
    description = "Select the object a person points at (click, box or stroke); the mask becomes the selection."
    args_model = SegmentArgs
    gestures = ("click", "box", "stroke")

    def run(self, args: SegmentArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        art = ctx.artifact(args.image_path)
        height, width = art.height or 0, art.width or 0
        region = gesture_region(args.gesture, height, width)
        if isinstance(args.gesture, Click):
            ys, xs = np.nonzero(region)
            cx, cy = float(xs.mean()), float(ys.mean())
            region = box_mask((cx - 40, cy - 40, cx + 40, cy + 40), height, width)
        new = NewArtifact(ArtifactKind.mask, region, parent=args.image_path, stem="mask", role="selection")
        return ToolOutput(text=f"Selected {int(region.sum())} pixels.", artifacts=[new])


class MaskedArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath


class MeanFillRemoveTool(Tool):
    name = "remove"
    description = "Remove the masked object: fill the selection from its surroundings."
    args_model = MaskedArgs
    gestures = ("click", "box", "stroke")

    def run(self, args: MaskedArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        image = ctx.read_image(args.image_path).copy()
        mask = ctx.read_mask(args.mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ")
        image[mask] = image[~mask].mean(axis=0).astype(np.uint8)
        new = NewArtifact(ArtifactKind.image, image, parent=args.image_path, stem="removed", role="image")
        return ToolOutput(text="Removed the selected object.", artifacts=[new])


class ImageArgs(ToolArgs):
    image_path: ImagePath


class FlipTool(Tool):
    name = "flip"
    description = "Mirror the image left to right."
    args_model = ImageArgs

    def run(self, args: ImageArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        image = ctx.read_image(args.image_path)[:, ::-1].copy()
        new = NewArtifact(ArtifactKind.image, image, parent=args.image_path, stem="flipped", role="image")
        return ToolOutput(text="Flipped the image.", artifacts=[new])


class MoveArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath
    dx: float = 0.0
    dy: float = 0.0
    scale: float = Field(1.0, gt=0.05, le=8)


class ShiftMoveTool(Tool):
    name = "move"
    description = "Move the selected object by dx, dy pixels and scale it."
    args_model = MoveArgs

    def run(self, args: MoveArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        image = ctx.read_image(args.image_path).copy()
        mask = ctx.read_mask(args.mask_path)
        moved = np.roll(mask, (int(round(args.dy)), int(round(args.dx))), axis=(0, 1))
        out = image.copy()
        out[moved] = np.roll(image, (int(round(args.dy)), int(round(args.dx))), axis=(0, 1))[moved]
        new = NewArtifact(ArtifactKind.image, out, parent=args.image_path, stem="moved", role="image")
        return ToolOutput(
            text=f"Moved the object by ({args.dx:g}, {args.dy:g}), scale {args.scale:g}.", artifacts=[new]
        )


class ReplaceArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath
    prompt: str = Field(min_length=1, max_length=200)


class UnavailableReplaceTool(Tool):
    name = "replace"
    description = "Replace the masked object with what the prompt describes."
    args_model = ReplaceArgs

    def run(self, args: ReplaceArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        raise AssertionError("never runs: its backend is unavailable")


class CountArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath | None = Field(None, description="count only inside this mask")
    region: Click | Box | Stroke | None = Field(None, description="count only where this gesture points")


class CountTool(Tool):
    """Counts bright pixels (a stand-in for tools such as ocr and vqa that take a region)."""

    name = "count"
    description = "Count the bright pixels of the image, or of a region; answers 'how bright is this'."
    args_model = CountArgs
    gestures = ("click", "box", "stroke")

    def run(self, args: CountArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        bright = image.mean(axis=2) > 127
        where = np.ones(bright.shape, dtype=bool)
        if args.region is not None:
            where = gesture_region(args.region, *bright.shape)
        if args.mask_path is not None:
            where = where & ctx.read_mask(args.mask_path)
        return ToolOutput(text=f"{int((bright & where).sum())} bright pixels.")


class BrokenTool(Tool):
    name = "broken"
    description = "Sharpen the image (this test tool always crashes)."
    args_model = ImageArgs
    calls: ClassVar[int] = 0

    def run(self, args: ImageArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        type(self).calls += 1
        raise RuntimeError("the sharpening kernel exploded")


def routing_tools() -> list[Tool]:
    """The test tools above plus the real OpenCV tools that routing reaches by scope and words
    (extract, crop, adjust, invert_selection) and the real EasyOCR text_mask."""
    from igpt_tools import adjust, crop, extract, invert, ocr, text_mask

    backend = NumpyBackend()
    opencv = extract.OpenCvBackend()
    return [
        SquareSegmentTool([backend]),
        MeanFillRemoveTool([backend]),
        FlipTool([backend]),
        ShiftMoveTool([backend]),
        UnavailableReplaceTool([MissingBackend()]),
        CountTool([backend]),
        BrokenTool([backend]),
        extract.ExtractTool([opencv]),
        crop.CropTool([opencv]),
        adjust.AdjustTool([opencv]),
        invert.InvertSelectionTool([opencv]),
        text_mask.TextMaskTool([ocr.EasyOcrBackend()]),
    ]


class Rig:
    """Store, registry, runner and a controller over the test tools, on ``data_dir``."""

    def __init__(self, data_dir: Path, chat_llm: ChatLLM | None = None, **settings: Any) -> None:
        self.settings = Settings(data_dir=data_dir, **settings)
        self.store = SessionStore(data_dir)
        self.registry = ToolRegistry(routing_tools(), self.settings)
        self.runner = ToolRunner(self.registry, self.store, self.settings, ModelPool(self.settings))
        self.controller = Controller(self.settings, self.store, self.registry, self.runner, chat_llm)

    def session_with(self, name: str = "dog_on_bench.png", mask: str | None = None) -> tuple[str, str, str | None]:
        """A session with an uploaded image (and a mask of it as the selection)."""
        from igpt_server import media

        sid = self.store.create().id
        info = media.probe_image(DATA / name, self.settings.max_image_pixels)
        image = self.store.add_artifact(
            sid,
            ArtifactKind.image,
            (DATA / name).read_bytes(),
            ext=info.ext,
            stem=Path(name).stem,
            width=info.width,
            height=info.height,
        )
        self.store.update_state(sid, active_image=image.path, active_mask=None)
        mask_path = None
        if mask is not None:
            mask_path = self.add_mask(sid, image.path, media.read_mask(DATA / mask))
        return sid, image.path, mask_path

    def add_mask(self, sid: str, image: str, mask: np.ndarray, *, select: bool = True) -> str:
        from igpt_server import media

        art = self.store.add_artifact(
            sid,
            ArtifactKind.mask,
            media.encode_png(mask),
            ext="png",
            stem="mask",
            parent=image,
            width=mask.shape[1],
            height=mask.shape[0],
        )
        if select:
            self.store.update_state(sid, active_mask=art.path)
        return art.path

    def close(self) -> None:
        self.store.close()

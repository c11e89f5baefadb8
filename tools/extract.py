"""Extract: cut the selected object out as an RGBA material, cropped to its bounding box.

The cut-out keeps the image's pixels where the mask is set (alpha 255) and is transparent
elsewhere (alpha 0). It joins the session's picked materials, ready for ``compose``.
"""

from __future__ import annotations

import numpy as np

from igpt_server.perception import geometry
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import (
    Backend,
    ImagePath,
    MaskPath,
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)


class ExtractArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath


class OpenCvBackend(Backend):
    """Array work with numpy and OpenCV; no weights."""

    name = "opencv"
    requires = ("cv2",)


def cut_out(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """HxWx4 uint8 RGBA of ``image`` (HxWx3) where ``mask`` (HxW bool) is set, cropped to the
    mask's bounding box, and that box (XYXY, x1/y1 exclusive). The mask must not be empty."""
    bbox = geometry.mask_bbox(mask)
    if bbox is None:
        raise ValueError("cannot cut out an empty mask")
    x0, y0, x1, y1 = bbox
    alpha = mask[y0:y1, x0:x1].astype(np.uint8) * 255
    return np.dstack([image[y0:y1, x0:x1], alpha]), bbox


class ExtractTool(Tool):
    name = "extract"
    description = (
        "Cut out (extract, copy) the selected object as a transparent PNG material for composing "
        "later. Give image_path and mask_path. Answers 'cut this out', 'copy the dog', 'keep this "
        "object'."
    )
    args_model = ExtractArgs
    words = ToolWords(
        verbs=(
            "cut out",
            "extract",
            "isolate",
            "copy",
            "lift",
            "clip out",
            "remove the background",
            "remove background",
            "drop the background",
            "erase the background",
            "get rid of the background",
            "make the background transparent",
        ),
        nouns=(
            "cut-out",
            "cutout",
            "transparent background",
            "transparent png",
            "no background",
            "sticker",
            "background removal",
        ),
        examples=(
            "cut out the dog",
            "isolate the truck",
            "remove the background of the dog",
            "give me the dog on a transparent background",
        ),
    )

    def run(self, args: ExtractArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        mask = ctx.read_mask(args.mask_path)
        geometry.check_mask_for(image, mask, args.image_path, args.mask_path)
        rgba, bbox = cut_out(image, mask)
        height, width = rgba.shape[:2]
        text = f"Cut out the selection of {args.image_path} as a {width}x{height} material (from box {list(bbox)})."
        new = NewArtifact(
            kind=ArtifactKind.material,
            content=rgba,
            parent=args.image_path,
            stem="cutout",
            role="material",
            meta={"box": list(bbox)},
        )
        return ToolOutput(text=text, artifacts=[new], data={"box": list(bbox), "width": width, "height": height})

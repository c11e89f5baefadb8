"""Remove: erase the selected object and fill its place with plausible background.

The tool grows the mask by 8 to 15 pixels (scaled to the object: edges, fur and shadows
stick out of a tight selection), asks its inpaint backend to fill that region, and returns
a new image of the same size in which only the grown region changed.

Inpaint backends implement ``inpaint(ctx, image, mask, prompt=None) -> HxWx3 uint8 RGB``
(interfaces.md). The full tier's Stable Diffusion backend (tools/inpaint.py) comes first when
its checkpoint is configured; the embedded backend below needs only OpenCV and numpy: it
works on a crop around the hole with context and fills it by multi-scale exemplar matching
(:mod:`igpt_tools.patchfill`), which continues texture (grass, lattice, sky) where diffusion
(OpenCV's Telea) smears streaks. It cannot invent structure it has not seen: a bench rail
hidden behind a removed dog is continued only where similar patches exist.
"""

from __future__ import annotations

import numpy as np

from igpt_server.errors import InvalidInput
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
)

#: context around the hole, as a fraction of the hole's longer side
CONTEXT = 0.25
#: the embedded fill refuses holes covering more of the image than this
MAX_HOLE_SHARE = 0.9


class RemoveArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath


class OpenCvInpaintBackend(Backend):
    """Exemplar-based fill (multi-scale PatchMatch) on a crop around the hole; no weights."""

    name = "opencv"
    requires = ("cv2",)

    def inpaint(self, ctx: ToolContext, image: np.ndarray, mask: np.ndarray, prompt: str | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB: ``image`` with the ``mask`` (HxW bool, already grown) filled.

        ``prompt`` is ignored: this backend only continues the surroundings. Pixels outside
        the mask are returned unchanged.
        """
        if mask.mean() > MAX_HOLE_SHARE:
            raise InvalidInput(
                f"the region to fill covers {100 * mask.mean():.0f} % of the image; the embedded fill copies "
                "texture from the rest of the picture and needs more of it: select a smaller object",
                code="mask_too_large",
            )
        return fill_region(image, mask)


def fill_region(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` (HxWx3 uint8) with ``mask`` (HxW bool) filled from a crop of its surroundings.

    The crop reaches a quarter of the hole's size (at least 48 pixels) past it on every side:
    near texture is the likeliest to continue behind the object (far texture - sky, a blurred
    horizon - made worse fills here), and a big image costs no more than its hole.
    """
    from igpt_tools import patchfill

    bbox = geometry.mask_bbox(mask)
    if bbox is None:
        return image.copy()
    margin = max(48, round(CONTEXT * max(bbox[2] - bbox[0], bbox[3] - bbox[1])))
    x0, y0, x1, y1 = geometry.expand_box(bbox, margin, *mask.shape)
    out = image.copy()
    out[y0:y1, x0:x1] = patchfill.fill(image[y0:y1, x0:x1], mask[y0:y1, x0:x1])
    return out


class RemoveTool(Tool):
    name = "remove"
    description = (
        "Remove (erase, delete, clean up) the selected object from an image and fill its place "
        "with background. Give image_path and mask_path (the selection of that image). Returns "
        "a new image of the same size. Answers 'remove it', 'erase this', 'get rid of the dog'."
    )
    args_model = RemoveArgs
    gestures = ()

    def run(self, args: RemoveArgs, ctx: ToolContext, backend: OpenCvInpaintBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        mask = ctx.read_mask(args.mask_path)
        geometry.check_mask_for(image, mask, args.image_path, args.mask_path)
        grow = geometry.dilation_for(mask)
        hole = geometry.dilate(mask, grow)
        result = backend.inpaint(ctx, image, hole)
        if result.shape != image.shape or result.dtype != np.uint8:
            raise RuntimeError(f"inpaint backend returned {result.dtype} {result.shape}, not uint8 {image.shape}")
        text = (
            f"Removed the object of {args.mask_path} from {args.image_path} "
            f"({int(hole.sum())} pixels filled after growing the mask by {grow} px)."
        )
        new = NewArtifact(kind=ArtifactKind.image, content=result, parent=args.image_path, stem="removed", role="image")
        return ToolOutput(text=text, artifacts=[new], data={"dilation": grow, "filled_pixels": int(hole.sum())})

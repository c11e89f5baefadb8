"""Remove: erase the selected object and fill its place with plausible background.

The tool grows the mask by the object's *edge band* (:func:`grow_to_edge_band`): the
pixels around the outline where the learned HED edges (:mod:`igpt_tools.edges`) still
respond, connected to the mask, up to the old fixed margin (8 to 15 px, 5 % of the
object's size) and at least a third of it. A soft fur outline or a shadow's edge is taken
in as far as it reaches; a crisp outline, or a touching object's own edges, costs only a
few pixels. The
edge map comes from the segment backend's region cache when the image was segmented there
(no extra cost), else HED runs on a crop around the mask (through the model pool); without
the HED weights the margin is the fixed 8 to 15 px (5 % of the object's size) it used to be.
Its inpaint backend then fills that region, and the tool returns a new image of the same
size in which only the grown region changed.

Inpaint backends are :class:`InpaintBackend` subclasses
(``inpaint(ctx, image, mask, prompt=None) -> HxWx3 uint8 RGB``). The full tier's Stable
Diffusion backend (tools/inpaint.py) comes first when its checkpoint is configured; the
embedded backend below needs only OpenCV and numpy: it works on a crop around the hole with
context and fills it by multi-scale exemplar matching (:mod:`igpt_tools.patchfill`), which
continues texture (grass, lattice, sky) where diffusion (OpenCV's Telea) smears streaks. It
cannot invent structure it has not seen: a bench rail
hidden behind a removed dog is continued only where similar patches exist.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
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
    ToolWords,
)

#: context around the hole, as a fraction of the hole's longer side
CONTEXT = 0.25
#: the hole reaches at least this many pixels past the mask (an anti-aliased outline)
MIN_GROW = 3
#: an edge probability at least this high is part of an edge band
BAND_THRESHOLD = 0.3
#: HED runs on a crop around the mask reaching this far past its box (times the growth limit)
EDGE_CROP = 3
#: the embedded fill refuses holes covering more of the image than this
MAX_HOLE_SHARE = 0.9


class RemoveArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath


class InpaintBackend(Backend, ABC):
    """A way to fill a region of an image. Shapes: ``image`` HxWx3 uint8 RGB, ``mask`` HxW bool
    (True = fill; already grown by the caller), result HxWx3 uint8 RGB of the same size in which
    pixels outside the mask are unchanged (or blended only at its feathered edge)."""

    @abstractmethod
    def inpaint(self, ctx: ToolContext, image: np.ndarray, mask: np.ndarray, prompt: str | None = None) -> np.ndarray:
        """``image`` with ``mask`` filled; ``prompt`` says what to paint there (backends that only
        continue the surroundings ignore it)."""


class OpenCvInpaintBackend(InpaintBackend):
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
    words = ToolWords(
        verbs=(
            "remove",
            "erase",
            "delete",
            "get rid of",
            "take away",
            "take out",
            "clean up",
            "wipe out",
            "make * disappear",
            "make * vanish",
            "make * go away",
            "inpaint",
            "paint out",
            "edit out",
        ),
        nouns=("removal",),
        examples=("make the truck disappear", "erase the text", "get rid of the bin"),
        senses=("erase.v.01", "erase.v.02", "delete.v.01", "get_rid_of.v.01", "extinguish.v.04"),
    )
    gestures = ()

    def run(self, args: RemoveArgs, ctx: ToolContext, backend: InpaintBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        mask = ctx.read_mask(args.mask_path)
        geometry.check_mask_for(image, mask, args.image_path, args.mask_path)
        hole, grow, source = grow_to_edge_band(mask, edge_map_around(ctx, args.image_path, image, mask))
        result = backend.inpaint(ctx, image, hole)
        if result.shape != image.shape or result.dtype != np.uint8:
            raise RuntimeError(f"inpaint backend returned {result.dtype} {result.shape}, not uint8 {image.shape}")
        text = (
            f"Removed the object of {args.mask_path} from {args.image_path} "
            f"({int(hole.sum())} pixels filled after growing the mask by up to {grow} px)."
        )
        new = NewArtifact(kind=ArtifactKind.image, content=result, parent=args.image_path, stem="removed", role="image")
        data = {"dilation": grow, "filled_pixels": int(hole.sum()), "grown_by": source}
        return ToolOutput(text=text, artifacts=[new], data=data)


def grow_to_edge_band(mask: np.ndarray, edges: np.ndarray | None) -> tuple[np.ndarray, int, str]:
    """The region to fill: ``mask`` (HxW bool) grown over its edge band.

    ``edges``: HxW float32 edge probabilities of the image (None: no learned edges). Returns
    the HxW bool hole, how far it may reach past the mask (pixels: the hole lies inside
    ``geometry.dilate(mask, that)``) and what decided it
    (``"edge band"`` or ``"fixed margin"``). The band is the pixels within the fixed margin
    (:func:`~igpt_server.perception.geometry.dilation_for`) of the mask whose edge
    probability is at least :data:`BAND_THRESHOLD`, connected to the mask; the hole always
    reaches a third of that margin (at least :data:`MIN_GROW` px). Growing further along
    edges was tried and ate the edges of touching objects (a bench's rails beside a dog).
    """
    fixed = geometry.dilation_for(mask)
    if edges is None or not mask.any():
        return geometry.dilate(mask, fixed), fixed, "fixed margin"
    near = geometry.dilate(mask, max(MIN_GROW, fixed // 3))
    band = geometry.dilate(mask, fixed) & (edges >= BAND_THRESHOLD)
    hole = geometry.components_touching(band | near, mask) | near
    return hole, fixed, "edge band"


def edge_map_around(ctx: ToolContext, image_path: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """HxW float32 HED edges of ``image`` near ``mask`` (zeros elsewhere), or None without HED.

    Taken from the shared region cache when the segment backend has the image; otherwise HED
    runs on a crop around the mask.
    """
    from igpt_tools import edges
    from igpt_tools.regions import SHARED_CACHE

    height, width = mask.shape
    cached = SHARED_CACHE.get((ctx.session_id, image_path))
    if cached is not None:
        return cv2.resize(cached.edges, (width, height), interpolation=cv2.INTER_LINEAR)
    if edges.unavailable_reason() is not None:
        return None
    box = geometry.mask_bbox(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = geometry.expand_box(box, EDGE_CROP * 2 * geometry.dilation_for(mask), height, width)
    crop = edges.edge_map(ctx, image[y0:y1, x0:x1])
    out = np.zeros((height, width), dtype=np.float32)
    out[y0:y1, x0:x1] = cv2.resize(crop, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return out

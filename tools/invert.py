"""Invert selection: select everything except the selected object.

"Everything but the dog", "the rest", "the background": the complement of a mask of an
image, a new mask of the same image that becomes the selection. The image does not change.
A selection that already covers the whole image has no complement: refused with a 422.
"""

from __future__ import annotations

import numpy as np

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
from igpt_tools.extract import OpenCvBackend


class InvertArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath


def complement(mask: np.ndarray) -> np.ndarray:
    """HxW bool: True exactly where the HxW bool ``mask`` is False."""
    return np.logical_not(mask)


class InvertSelectionTool(Tool):
    name = "invert_selection"
    description = (
        "Invert the selection: select everything except the selected object (the background, the "
        "rest). Give image_path and mask_path (the selection of that image); the complement becomes "
        "the selection, the image is unchanged. Answers 'select everything but this', 'select the "
        "background', 'invert the selection'."
    )
    args_model = InvertArgs
    words = ToolWords(
        verbs=("invert", "inverse", "flip the selection", "reverse the selection", "select the rest"),
        nouns=("inverse", "complement", "inverted selection", "inverse selection"),
        examples=("select everything but the dog", "invert the selection", "select the background instead"),
    )

    def run(self, args: InvertArgs, ctx: ToolContext, backend: OpenCvBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        mask = ctx.read_mask(args.mask_path)
        geometry.check_mask_for(image, mask, args.image_path, args.mask_path)
        inverse = complement(mask)
        if not inverse.any():
            raise InvalidInput(
                "the selection covers the whole image, so everything else is nothing; select the object to "
                "leave out (click it), then invert",
                code="empty_complement",
            )
        share = float(inverse.mean())
        text = f"Selected everything except the previous selection ({100 * share:.0f} % of the image)."
        new = NewArtifact(
            kind=ArtifactKind.mask, content=inverse, parent=args.image_path, stem="inverse", role="selection"
        )
        data = {"area": int(inverse.sum()), "share": share, "inverted": args.mask_path}
        return ToolOutput(text=text, artifacts=[new], data=data)

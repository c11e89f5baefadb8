"""Replace: paint what a prompt describes into the masked region ("change the dog into a monkey").

Backend: :class:`~igpt_tools.inpaint.SdInpaintBackend` (Stable Diffusion inpainting, crop
around the dilated mask and paste back at the image's resolution). No embedded backend: on
a server without the checkpoint the tool is unavailable and says where to put it.
"""

from __future__ import annotations

import secrets

from pydantic import Field, field_validator

from igpt_server.perception.geometry import check_mask_for, dilate, dilation_for
from igpt_server.store.artifacts import ArtifactKind
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
from igpt_tools.diffusion import MAX_PROMPT_CHARS, non_blank
from igpt_tools.inpaint import SdInpaintBackend


class ReplaceArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath
    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="what to paint into the masked region, e.g. 'a monkey sitting on the bench'",
    )
    steps: int = Field(25, ge=1, le=100, description="denoising steps (more: slower, finer)")
    guidance: float = Field(7.5, ge=0.0, le=30.0, description="how strongly to follow the prompt")
    seed: int | None = Field(None, ge=0, lt=2**32, description="random seed; omit for a new random one")
    dilate: int | None = Field(
        None, ge=0, le=64, description="grow the mask by this many pixels first; default: as remove does (8-15 px)"
    )

    @field_validator("prompt")
    @classmethod
    def _words(cls, value: str) -> str:
        return non_blank(value)


class ReplaceTool(Tool):
    name = "replace"
    description = (
        "Replace the masked object or region of an image with something described by a prompt "
        "(e.g. 'replace the dog with a monkey', 'change the bench into a sofa'). Needs image_path, "
        "mask_path (the object to replace) and prompt (the new content, in a few words)."
    )
    args_model = ReplaceArgs
    words = ToolWords(
        verbs=(
            "replace",
            "swap",
            "substitute",
            "exchange",
            "turn * into",
            "change * into",
            "change * to",
            "replace * with",
            "make * into",
        ),
        examples=("replace this with a red car", "turn the dog into a cat"),
        senses=("replace.v.01", "substitute.v.01"),
        roles=(("prompt", "prompt"),),
    )
    gestures = ()

    def run(self, args: ReplaceArgs, ctx: ToolContext, backend: SdInpaintBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        mask = ctx.read_mask(args.mask_path)
        check_mask_for(image, mask, args.image_path, args.mask_path)
        seed = secrets.randbelow(2**32) if args.seed is None else args.seed
        prompt = args.prompt
        grow = dilation_for(mask) if args.dilate is None else args.dilate
        result = backend.inpaint(
            ctx, image, dilate(mask, grow), prompt, steps=args.steps, guidance=args.guidance, seed=seed
        )
        artifact = NewArtifact(
            kind=ArtifactKind.image,
            content=result,
            parent=args.image_path,
            stem="replaced",
            role="image",
            meta={"prompt": prompt, "seed": seed, "steps": args.steps, "mask": args.mask_path},
        )
        return ToolOutput(
            text=f'Replaced the masked region of {args.image_path} with "{prompt}" (seed {seed}).',
            artifacts=[artifact],
            data={"seed": seed, "prompt": prompt, "dilation": grow},
        )

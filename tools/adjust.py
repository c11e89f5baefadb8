"""Adjust: blur, desaturate, darken, brighten or pixelate the selection or the background.

The effect applies to a *region*: the selection (``region="selection"``), or everything but
the selection (``region="background"``, "blur the background", "grey out everything but the
dog"). Without a mask, ``region="selection"`` means the whole image and ``"background"`` is
refused (there is no object to keep).

Decisions:

* **The other side is never touched.** The edge is feathered *inside* the region: the
  effect's weight ramps from 0 at the region's border to 1 at ``feather`` pixels in (1 % of the
  image's diagonal, at least 2 px), so the border does not look cut, and every pixel outside
  the region keeps its exact value (blurring the background leaves the object's pixels as
  they were).
* **No colour bleeds across the border.** Blur and pixelate average only pixels of the region
  (normalised convolution: ``blur(image * region) / blur(region)``), so a blurred background
  gets no halo of the object's colour, and a blurred object no halo of the background's.
* **Strength** in (0, 1]: blur sigma is ``strength`` x 2.5 % of the image's longer side;
  pixelate blocks are ``strength`` x 4 % of it (at least 2 px); desaturate mixes that much
  grey; darken scales brightness by ``1 - 0.75 * strength``; brighten applies the gamma
  ``1 / (1 + 1.5 * strength)`` (shadows lift most, white stays white).
* The result is a new image of the same size; when a mask was given, the same mask is
  returned as a selection of the new image, so the object stays selected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from igpt_server.errors import InvalidInput
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

Effect = Literal["blur", "desaturate", "darken", "pixelate", "brighten"]
Region = Literal["selection", "background"]

#: feather width as a fraction of the image's diagonal
FEATHER = 0.01
BLUR_SIGMA = 0.025
PIXEL_BLOCK = 0.04


class AdjustArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath | None = Field(
        None, description="the selection; omit to apply the effect to the whole image (region 'selection')"
    )
    effect: Effect = Field(description="blur, desaturate (grey out), darken, pixelate or brighten")
    region: Region = Field("selection", description="'selection': the selected object; 'background': everything else")
    strength: float = Field(0.6, gt=0.0, le=1.0, description="how strong, in (0, 1]")


def effect_weight(region: np.ndarray, feather: int) -> np.ndarray:
    """HxW float32 in [0, 1]: 0 outside the HxW bool ``region``, ramping smoothly to 1 at
    ``feather`` pixels inside its border (the image's own edge is not a border)."""
    if region.all():
        return np.ones(region.shape, np.float32)
    padded = cv2.copyMakeBorder(region.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    inside = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    ramp = np.clip(inside / max(feather, 1), 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)  # smoothstep


def apply_effect(image: np.ndarray, region: np.ndarray, effect: Effect, strength: float) -> np.ndarray:
    """HxWx3 uint8 RGB: ``effect`` computed from the pixels of ``region`` (HxW bool) only.

    Values outside ``region`` are meaningless; :func:`adjust` blends them away.
    """
    longer = max(image.shape[:2])
    pixels = image.astype(np.float32)
    if effect == "blur":
        sigma = max(0.5, strength * BLUR_SIGMA * longer)
        return _region_average(pixels, region, lambda a: _gaussian(a, sigma))
    if effect == "pixelate":
        block = max(2, round(strength * PIXEL_BLOCK * longer))
        return _region_average(pixels, region, lambda a: _blocks(a, block))
    if effect == "desaturate":
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[:, :, None]
        return _to_uint8(pixels * (1.0 - strength) + grey * strength)
    if effect == "darken":
        return _to_uint8(pixels * (1.0 - 0.75 * strength))
    gamma = 1.0 / (1.0 + 1.5 * strength)  # brighten
    return _to_uint8(255.0 * (pixels / 255.0) ** gamma)


def adjust(image: np.ndarray, region: np.ndarray, effect: Effect, strength: float) -> np.ndarray:
    """HxWx3 uint8 RGB: ``image`` with ``effect`` applied in the HxW bool ``region``, feathered
    inside its border; pixels outside ``region`` are returned unchanged."""
    feather = max(2, round(FEATHER * float(np.hypot(*region.shape))))
    weight = effect_weight(region, feather)[:, :, None]
    changed = apply_effect(image, region, effect, strength).astype(np.float32)
    out = _to_uint8(image.astype(np.float32) * (1.0 - weight) + changed * weight)
    out[~region] = image[~region]
    return out


def _region_average(pixels: np.ndarray, region: np.ndarray, smooth: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Normalised convolution: ``smooth(pixels * region) / smooth(region)``, so only the
    region's pixels are averaged. ``smooth`` maps an HxW[xC] float32 array to the same shape."""
    weight = region.astype(np.float32)
    total = smooth(pixels * weight[:, :, None])
    norm = smooth(weight)[:, :, None]
    return _to_uint8(np.where(norm > 1e-4, total / np.maximum(norm, 1e-4), pixels))


def _gaussian(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an HxW[xC] float32 array; a wide one (sigma over 8 px) runs on a copy
    shrunk so that sigma is 4 px there, then scaled back (the same look, many times faster)."""
    factor = int(sigma // 4)
    if factor < 2:
        return cv2.GaussianBlur(array, (0, 0), sigma)
    height, width = array.shape[:2]
    small = cv2.resize(array, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _blocks(array: np.ndarray, block: int) -> np.ndarray:
    """Each ``block`` x ``block`` tile (from the top-left corner) replaced by its mean."""
    height, width = array.shape[:2]
    small = cv2.resize(array, (max(1, -(-width // block)), max(1, -(-height // block))), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (small.shape[1] * block, small.shape[0] * block), interpolation=cv2.INTER_NEAREST)
    return big[:height, :width]


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(array + 0.5, 0, 255).astype(np.uint8)


class AdjustTool(Tool):
    name = "adjust"
    description = (
        "Blur, desaturate (grey out), darken, brighten or pixelate part of an image: give image_path, "
        "effect, mask_path (the selection) and region: 'selection' for the selected object, "
        "'background' for everything except it; strength in (0, 1]. Without mask_path the whole image "
        "changes. The object stays selected. Answers 'blur the background', 'pixelate the face', "
        "'grey out everything but the dog', 'make it darker'."
    )
    args_model = AdjustArgs
    words = ToolWords(
        verbs=(
            "blur",
            "soften",
            "defocus",
            "smudge",
            "fuzz",
            "desaturate",
            "grey out",
            "gray out",
            "fade",
            "wash out",
            "darken",
            "dim",
            "shade",
            "brighten",
            "lighten",
            "light up",
            "pixelate",
            "pixelize",
            "mosaic",
            "censor",
            "obscure",
            "anonymize",
        ),
        nouns=("blur", "bokeh", "black and white", "greyscale", "grayscale", "mosaic", "pixelation"),
        examples=(
            "blur the background",
            "pixelate the face",
            "grey out everything but the dog",
            "make the sky darker",
            "brighten this",
        ),
        senses=("blur.v.02", "smear.v.02", "darken.v.03", "brighten.v.01", "censor.v.02"),
        roles=(("effect", "choice"), ("region", "choice")),
    )

    def run(self, args: AdjustArgs, ctx: ToolContext, backend: OpenCvBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        mask = None
        if args.mask_path is not None:
            mask = ctx.read_mask(args.mask_path)
            geometry.check_mask_for(image, mask, args.image_path, args.mask_path)
        region = _region(image, mask, args.region)
        progress.check_cancelled()
        result = adjust(image, region, args.effect, args.strength)
        where = (
            {"selection": "the selection", "background": "the background"}[args.region]
            if mask is not None
            else "the whole image"
        )
        text = f"Applied {args.effect} (strength {args.strength:g}) to {where}."
        outputs = [
            NewArtifact(kind=ArtifactKind.image, content=result, parent=args.image_path, stem=args.effect, role="image")
        ]
        if mask is not None:
            outputs.append(
                NewArtifact(kind=ArtifactKind.mask, content=mask, parent="@0", stem="mask", role="selection")
            )
        data = {"effect": args.effect, "region": args.region, "strength": args.strength, "pixels": int(region.sum())}
        return ToolOutput(text=text, artifacts=outputs, data=data)


def _region(image: np.ndarray, mask: np.ndarray | None, region: Region) -> np.ndarray:
    """HxW bool of the pixels to change."""
    if mask is None:
        if region == "background":
            raise InvalidInput(
                "region 'background' needs a selection to keep: select the object first (click it) or give mask_path",
                code="no_selection",
            )
        return np.ones(image.shape[:2], bool)
    if region == "selection":
        return mask
    if mask.all():
        raise InvalidInput(
            "the selection covers the whole image, so there is no background to change; select a smaller "
            "object, or use region 'selection'",
            code="empty_background",
        )
    return ~mask

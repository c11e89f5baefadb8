"""Stable Diffusion inpainting: the full backend of ``remove`` (no prompt) and ``replace`` (a prompt).

Checkpoint: ``<model_dir>/sd-inpaint/``, a diffusers folder (``model_index.json``, ``unet/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), e.g. Stable Diffusion 1.5
inpainting saved with ``save_pretrained``; or the Hugging Face cache of one of
:data:`HUB_REPOS`. Loaded once into the model pool (key ``inpaint.sd``; device and dtype
of the ``inpaint`` family: ``IGPT_DEVICES=inpaint=cuda:0``, ``IGPT_DTYPES=inpaint=fp16``; by
default fp16 on CUDA, fp32 on the CPU); the safety checker is not loaded.

Crop and paste, so a 4000-px photo is not squashed to 512: the backend crops a box around
the mask with context (at least the model's native size where the image allows), resizes
the crop to the model's resolution (long side native, sides multiples of the UNet's
granularity), inpaints, resizes back and blends into the original through an inward
feather. Pixels outside the mask are never touched: they are bit-identical in the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from igpt_server.errors import InvalidInput, ToolUnavailable
from igpt_server.models.pool import PooledModule, Shrink
from igpt_server.perception.geometry import mask_bbox
from igpt_server.settings import Settings
from igpt_server.tooling.interface import ToolContext
from igpt_tools.diffusion import (
    cpu_generator,
    fit_size,
    locate,
    missing_message,
    pipeline_geometry,
    pipeline_loader,
    smaller_size,
)
from igpt_tools.remove import InpaintBackend

SUBDIR = "sd-inpaint"
HUB_REPOS = ("stable-diffusion-v1-5/stable-diffusion-inpainting", "runwayml/stable-diffusion-inpainting")
FAMILY = "inpaint"
POOL_KEY = f"{FAMILY}.sd"
#: what "remove" asks for: plausible background, no new object
REMOVE_PROMPT = "background, empty scene, seamless continuation of the surroundings"
REMOVE_NEGATIVE = "object, person, animal, text, watermark, logo, frame, blurry, distorted, artifacts"
REPLACE_NEGATIVE = "blurry, low quality, distorted, deformed, watermark, text, frame"


@dataclass(frozen=True)
class CropBox:
    """XYXY integer box in image pixels (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def of(self, array: np.ndarray) -> np.ndarray:
        """The view of an HxW[xC] array inside the box."""
        return array[self.y0 : self.y1, self.x0 : self.x1]


def crop_around(mask: np.ndarray, min_side: int, context: float = 0.5) -> CropBox:
    """A box around the True pixels of the HxW ``mask``, grown for context, inside the image.

    Each side grows by ``context`` times the mask box's longer side (at least 16 px), and the
    box is widened to ``min_side`` per side where the image allows, so the model sees enough
    surroundings. Raises :class:`InvalidInput` for an empty mask.
    """
    bbox = mask_bbox(mask)
    if bbox is None:
        raise InvalidInput("the mask covers nothing; select a region first", code="empty_mask")
    height, width = mask.shape
    x0, y0, x1, y1 = bbox
    margin = max(16, round(context * max(x1 - x0, y1 - y0)))
    box_w = min(width, max(x1 - x0 + 2 * margin, min_side))
    box_h = min(height, max(y1 - y0 + 2 * margin, min_side))
    left = _place((x0 + x1) // 2 - box_w // 2, box_w, width)
    top = _place((y0 + y1) // 2 - box_h // 2, box_h, height)
    return CropBox(left, top, left + box_w, top + box_h)


def _place(start: int, length: int, limit: int) -> int:
    return min(max(0, start), limit - length)


def inward_alpha(mask: np.ndarray, feather_px: int) -> np.ndarray:
    """HxW float32 blend weight: 0 outside ``mask``, rising to 1 over ``feather_px`` inside it.

    Thin masks get a proportionally shorter ramp so they are still fully replaced at their core.
    """
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ramp = max(1.0, min(float(feather_px), float(inside.max()) / 2))
    return np.clip(inside / ramp, 0.0, 1.0).astype(np.float32)


def paste(image: np.ndarray, patch: np.ndarray, mask: np.ndarray, box: CropBox, feather_px: int) -> np.ndarray:
    """A copy of ``image`` with ``patch`` (the box's size) blended in where ``mask`` is True.

    ``image`` HxWx3 uint8, ``patch`` box.height x box.width x 3 uint8, ``mask`` HxW bool.
    Pixels where the mask is False keep their exact values.
    """
    out = image.copy()
    region = box.of(out)
    alpha = inward_alpha(box.of(mask), feather_px)[..., None]
    blended = alpha * patch.astype(np.float32) + (1.0 - alpha) * region.astype(np.float32)
    inside = box.of(mask)
    region[inside] = np.clip(np.rint(blended[inside]), 0, 255).astype(np.uint8)
    return out


def _resize(array: np.ndarray, width: int, height: int, *, smooth: bool = True) -> np.ndarray:
    """Resize an HxW[x3] uint8 array: area averaging to shrink, cubic (linear if not ``smooth``) to grow."""
    shrinking = width * height < array.shape[0] * array.shape[1]
    grow = cv2.INTER_CUBIC if smooth else cv2.INTER_LINEAR
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA if shrinking else grow)


class SdInpaintBackend(InpaintBackend):
    """Stable Diffusion inpainting (diffusers) with crop-and-paste at the image's resolution."""

    name = "sd-inpaint"
    requires = ("torch", "diffusers", "transformers")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = (FAMILY,)

    def __init__(self, steps: int = 25, guidance: float = 7.5) -> None:
        self.steps = steps
        self.guidance = guidance

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is None and self.checkpoint(settings) is None:
            needs = "a diffusers inpainting folder with model_index.json"
            return missing_message("Stable Diffusion inpainting", settings, SUBDIR, needs, HUB_REPOS)
        return reason

    @staticmethod
    def checkpoint(settings: Settings) -> Path | None:
        return locate(settings, SUBDIR, "model_index.json", HUB_REPOS)

    def inpaint(
        self,
        ctx: ToolContext,
        image: np.ndarray,
        mask: np.ndarray,
        prompt: str | None = None,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Fill the HxW bool ``mask`` of the HxWx3 uint8 RGB ``image``; returns the same size.

        ``prompt=None`` removes (fills with background); a prompt paints that into the mask.
        Pixels outside the mask are unchanged. ``seed`` None means 0 (reproducible).
        """
        if mask.shape != image.shape[:2]:
            raise InvalidInput(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}",
                code="mask_size_mismatch",
            )
        if prompt is None and mask.all():
            raise InvalidInput(
                "the mask covers the whole image, so there is no background to fill from; "
                "select only the object to remove",
                code="mask_covers_everything",
            )
        path = self.checkpoint(ctx.settings)
        if path is None:
            raise ToolUnavailable(self.unavailable_reason(ctx.settings) or "no inpainting checkpoint")
        device = ctx.pool.device_for(FAMILY)
        dtype = ctx.pool.dtype_for(FAMILY, device)
        request = _Request(
            prompt=REMOVE_PROMPT if prompt is None else prompt,
            negative=REMOVE_NEGATIVE if prompt is None else REPLACE_NEGATIVE,
            steps=steps or self.steps,
            guidance=self.guidance if guidance is None else guidance,
            seed=0 if seed is None else seed,
        )

        def at(smaller: bool) -> Callable[[PooledModule[Any]], np.ndarray]:
            def run(pipe: PooledModule[Any]) -> np.ndarray:
                native, multiple = pipeline_geometry(pipe.obj)
                size = smaller_size(native, multiple) if smaller else native
                return _inpaint_at(pipe.obj, image, mask, request, size, multiple)

            return run

        return ctx.pool.run(
            POOL_KEY,
            pipeline_loader("StableDiffusionInpaintPipeline", path, dtype, "Stable Diffusion inpainting"),
            at(smaller=False),
            backend=self.name,
            device=device,
            dtype=dtype,
            shrink=Shrink(at(smaller=True), "at 3/4 of the model's native size"),
        )


@dataclass(frozen=True)
class _Request:
    prompt: str
    negative: str
    steps: int
    guidance: float
    seed: int


def _inpaint_at(
    pipe: Any, image: np.ndarray, mask: np.ndarray, request: _Request, size: int, multiple: int
) -> np.ndarray:
    """One inpainting pass with the crop resized to long side ``size``."""
    from PIL import Image

    box = crop_around(mask, min_side=size)
    work_w, work_h = fit_size(box.width, box.height, size, multiple)
    crop = _resize(box.of(image), work_w, work_h)
    crop_mask = _resize(box.of(mask).astype(np.uint8) * 255, work_w, work_h, smooth=False) > 0
    result = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative,
        image=Image.fromarray(crop),
        mask_image=Image.fromarray(crop_mask.astype(np.uint8) * 255),
        height=work_h,
        width=work_w,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        strength=1.0,
        generator=cpu_generator(request.seed),
        output_type="np",
    ).images[0]
    patch = _resize(np.clip(np.rint(result * 255), 0, 255).astype(np.uint8), box.width, box.height)
    feather_px = max(2, round(0.01 * max(box.width, box.height)))
    return paste(image, patch, mask, box, feather_px)

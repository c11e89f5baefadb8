"""Grounding: find objects named in text (GroundingDINO), and turn them into SAM masks.

Tools: ``ground`` (text -> boxes, phrases, scores, and a picture with the boxes drawn) and
``ground_and_segment`` (text -> boxes -> one SAM mask per box; their union becomes the active
selection, so "remove the bench" works without a click).

Files (never downloaded), in ``<model_dir>/groundingdino/``:

* ``groundingdino_swint_ogc.pth`` (or any one ``*.pth``): the checkpoint, a dict with a
  ``model`` state dict (as released) or a bare state dict;
* ``GroundingDINO_SwinT_OGC.py`` (or any one ``*.py``): the model config; when absent, the
  config shipped in groundingdino-py is used (SwinB for a checkpoint named ``*swinb*``,
  else SwinT). Optional extra keys ``inference_size`` (short side, default 800) and
  ``inference_max_size`` (default 1333) set the input resolution;
* ``bert-base-uncased/``: the text encoder folder (config, weights, vocab), or else the
  ``bert-base-uncased`` snapshot of the local Hugging Face cache.

The released checkpoint holds non-tensor objects; when ``torch.load(weights_only=True)``
refuses it, it is loaded with ``weights_only=False`` (the model directory is trusted).
Runs on ``IGPT_DEVICES=ground=...``; fp32 by default (``IGPT_DTYPES=ground=fp16|bf16``
runs it under CUDA autocast). Boxes are XYXY in image pixels.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, Field

from igpt_server.errors import InvalidInput, ToolUnavailable
from igpt_server.models.pool import PooledModule, Shrink
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
from igpt_tools.sam import SamSegmentBackend

log = logging.getLogger(__name__)

GROUNDING_SUBDIR = "groundingdino"
CHECKPOINT_FILE = "groundingdino_swint_ogc.pth"
CONFIG_FILE = "GroundingDINO_SwinT_OGC.py"
BERT_SUBDIR = "bert-base-uncased"
#: boxes overlapping a better one by more than this IoU are dropped
NMS_IOU = 0.5
#: the detector's input size after running out of memory twice, as a share of its configured size
SMALLER_INPUT = 0.75


@dataclass(frozen=True)
class GroundingFiles:
    checkpoint: Path
    config: Path
    bert_dir: Path

    @property
    def key(self) -> str:
        """The model pool key, ``ground.<checkpoint stem>``."""
        return f"ground.{self.checkpoint.stem}"


def find_grounding_files(model_dir: Path | None) -> GroundingFiles:
    """The checkpoint, config and text encoder of GroundingDINO, or :class:`ToolUnavailable`."""
    wanted = f"{CHECKPOINT_FILE} (+ optional {CONFIG_FILE}) and a {BERT_SUBDIR}/ text encoder folder"
    if model_dir is None:
        raise ToolUnavailable(
            f"grounding needs GroundingDINO: set IGPT_MODEL_DIR and put {wanted} in <model_dir>/{GROUNDING_SUBDIR}/"
        )
    folder = Path(model_dir) / GROUNDING_SUBDIR
    checkpoint = _one_file(folder, CHECKPOINT_FILE, "*.pth")
    if checkpoint is None:
        raise ToolUnavailable(f"no GroundingDINO checkpoint in {folder}: put {wanted} there")
    config = _one_file(folder, CONFIG_FILE, "*.py") or _packaged_config(checkpoint)
    if config is None:
        raise ToolUnavailable(f"no GroundingDINO config in {folder}: put {CONFIG_FILE} there")
    bert_dir = folder / BERT_SUBDIR
    if not (bert_dir / "config.json").is_file():
        cached = _cached_bert()
        if cached is None:
            raise ToolUnavailable(
                f"GroundingDINO's text encoder is missing: put the {BERT_SUBDIR} model folder at {bert_dir} "
                "(or into the local Hugging Face cache)"
            )
        bert_dir = cached
    return GroundingFiles(checkpoint, config, bert_dir)


def _one_file(folder: Path, preferred: str, pattern: str) -> Path | None:
    if (folder / preferred).is_file():
        return folder / preferred
    found = sorted(folder.glob(pattern))
    return found[0] if found else None


def _packaged_config(checkpoint: Path) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("groundingdino")
    if spec is None or spec.origin is None:
        return None
    name = "GroundingDINO_SwinB_cfg.py" if "swinb" in checkpoint.name.lower() else CONFIG_FILE
    path = Path(spec.origin).parent / "config" / name
    return path if path.is_file() else None


def _cached_bert() -> Path | None:
    """The ``bert-base-uncased`` snapshot folder of the local Hugging Face cache, if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(BERT_SUBDIR, "config.json")
    return Path(found).parent if isinstance(found, str) else None


class GroundingModel(PooledModule[Any]):
    """What the pool holds: the GroundingDINO network (``obj``) and its input resolution
    (short side ``size``, long side at most ``max_size``)."""

    def __init__(self, model: Any, size: int, max_size: int, *, device: str, dtype: str | None = None) -> None:
        super().__init__(model, [model], device=device, dtype=dtype)
        self.size = size
        self.max_size = max_size


def load_grounding(files: GroundingFiles, device: str) -> GroundingModel:
    """Build GroundingDINO from its config with the local text encoder and load the weights."""
    from groundingdino.models import build_model
    from groundingdino.util.misc import clean_state_dict
    from groundingdino.util.slconfig import SLConfig

    args = SLConfig.fromfile(str(files.config))
    args.device = device
    args.text_encoder_type = str(files.bert_dir)
    args.use_checkpoint = args.use_transformer_ckpt = False  # gradient checkpointing only slows inference
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the text encoder path
        model = build_model(args)
    state = _read_checkpoint(files.checkpoint)
    state = clean_state_dict(state.get("model", state))
    result = model.load_state_dict(state, strict=False)
    matched = len(state) - len(result.unexpected_keys)
    if matched == 0:
        raise ToolUnavailable(
            f"{files.checkpoint} holds no weights of the model in {files.config}; use a matching checkpoint and config"
        )
    if result.missing_keys:
        log.warning("GroundingDINO: %d weights missing from %s", len(result.missing_keys), files.checkpoint)
    model.to(device).eval()
    size, max_size = int(args.get("inference_size", 800)), int(args.get("inference_max_size", 1333))
    return GroundingModel(model, size, max_size, device=device, dtype="fp32")


def _read_checkpoint(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.info("%s holds non-tensor objects; loading it with weights_only=False (trusted model dir)", path)
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ToolUnavailable(f"cannot read the GroundingDINO checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict):
        raise ToolUnavailable(f"{path} is not a GroundingDINO checkpoint (a dict with a 'model' state dict)")
    return state


class Detection(BaseModel):
    """One found object: XYXY box in image pixels, the words of the query it matched, a score."""

    box: tuple[float, float, float, float]
    phrase: str
    score: float


def normalise_query(query: str) -> str:
    """GroundingDINO's caption form: lower case, ending with a full stop."""
    caption = " ".join(query.lower().split())
    return caption if caption.endswith(".") else caption + "."


def input_tensor(image: np.ndarray, size: int, max_size: int) -> Any:
    """The model's input: ``image`` (HxWx3 uint8 RGB) resized and normalised, 3xH'xW' float."""
    import groundingdino.datasets.transforms as T
    from PIL import Image

    transform = T.Compose(
        [
            T.RandomResize([size], max_size=max_size),  # one size: deterministic
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    tensor, _ = transform(Image.fromarray(image), None)
    return tensor


class GroundingDinoBackend(Backend):
    """GroundingDINO from the model directory (see the module docstring)."""

    name = "groundingdino"
    requires: ClassVar[tuple[str, ...]] = ("torch", "groundingdino", "transformers")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = ("ground",)

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is not None:
            return reason
        try:
            find_grounding_files(settings.model_dir)
        except ToolUnavailable as exc:
            return exc.message
        return None

    def detect(
        self,
        ctx: ToolContext,
        image: np.ndarray,
        query: str,
        *,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        max_boxes: int = 10,
    ) -> list[Detection]:
        """Objects of ``image`` (HxWx3 uint8 RGB) matching ``query``, best first, after NMS."""
        import torch

        files = find_grounding_files(ctx.settings.model_dir)
        device = ctx.pool.device_for("ground")
        dtype = ctx.pool.dtype_for("ground", device, gpu_default="fp32")
        caption = normalise_query(query)

        def at(scale: float) -> Callable[[GroundingModel], list[Detection]]:
            def run(bundle: GroundingModel) -> list[Detection]:
                size, max_size = round(bundle.size * scale), round(bundle.max_size * scale)
                with torch.inference_mode():
                    tensor = input_tensor(image, size, max_size).to(device)
                    with _autocast(device, dtype):
                        outputs = bundle.obj(tensor[None], captions=[caption])
                    logits = outputs["pred_logits"][0].float().sigmoid().cpu()  # (queries, 256)
                    boxes = outputs["pred_boxes"][0].float().cpu()  # (queries, 4) cx, cy, w, h in [0, 1]
                tokenizer = bundle.obj.tokenizer  # used under the model's lock: fast tokenizers are not re-entrant
                return _detections(
                    image.shape[:2], logits, boxes, caption, tokenizer, box_threshold, text_threshold, max_boxes
                )

            return run

        return ctx.pool.run(
            files.key,
            lambda d: load_grounding(files, d),
            at(1.0),
            backend=self.name,
            device=device,
            dtype=dtype,
            shrink=Shrink(at(SMALLER_INPUT), f"with the input at {SMALLER_INPUT:.0%} of its size"),
        )


def _autocast(device: str, dtype: str) -> Any:
    import torch

    from igpt_server.models.pool import torch_dtype

    if device.startswith("cuda") and dtype != "fp32":
        return torch.autocast("cuda", dtype=torch_dtype(dtype))
    return contextlib.nullcontext()


def _detections(
    shape: tuple[int, int],
    logits: Any,
    boxes: Any,
    caption: str,
    tokenizer: Any,
    box_threshold: float,
    text_threshold: float,
    max_boxes: int,
) -> list[Detection]:
    """Threshold, name (the query's words above ``text_threshold``), convert to pixels, NMS, top-k."""
    import torch
    from groundingdino.util.utils import get_phrases_from_posmap
    from torchvision.ops import box_convert, nms

    scores = logits.max(dim=1).values
    keep = scores > box_threshold
    logits, boxes, scores = logits[keep], boxes[keep], scores[keep]
    if len(scores) == 0:
        return []
    height, width = shape
    xyxy = box_convert(boxes * torch.tensor([width, height, width, height]), "cxcywh", "xyxy")
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    order = nms(xyxy, scores, NMS_IOU)[:max_boxes]
    tokenized = tokenizer(caption)
    fallback = caption.rstrip(".").strip()
    found = []
    for i in order.tolist():
        phrase = get_phrases_from_posmap(logits[i] > text_threshold, tokenized, tokenizer).replace(".", "").strip()
        box = tuple(round(float(v), 2) for v in xyxy[i])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue  # a box squeezed to nothing by the image border
        found.append(Detection(box=box, phrase=phrase or fallback, score=round(float(scores[i]), 4)))  # type: ignore[arg-type]
    return found


def draw_detections(image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """HxWx3 uint8: ``image`` with each box and its label drawn (line width scales with the image)."""
    out = image.copy()
    thickness = max(2, round(max(image.shape[:2]) / 400))
    for i, det in enumerate(detections):
        colour = tuple(
            int(c) for c in cv2.cvtColor(np.array([[[i * 37 % 180, 220, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
        )
        x0, y0, x1, y1 = (round(v) for v in det.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness)
        label = f"{det.phrase} {det.score:.2f}"
        cv2.putText(
            out,
            label,
            (x0 + 2, max(y0 - 4, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            thickness / 4,
            colour,
            max(1, thickness // 2),
        )
    return out


# tools -------------------------------------------------------------------------------------


class GroundArgs(ToolArgs):
    image_path: ImagePath
    query: str = Field(
        min_length=1,
        max_length=300,
        pattern=r"\w",
        description="what to find, in a few words; several kinds separated by ' . ', e.g. 'dog . bench'",
    )
    box_threshold: float = Field(0.35, ge=0.0, le=1.0, description="lowest box confidence kept")
    text_threshold: float = Field(0.25, ge=0.0, le=1.0, description="lowest word confidence to name a box")
    max_boxes: int = Field(10, ge=1, le=32, description="most boxes returned")


class GroundTool(Tool):
    name = "ground"
    description = (
        "Find objects named in words and return their boxes: give image_path and query (e.g. 'dog', "
        "'red car . person'). Answers 'find the dog', 'where is the bench', 'detect every person'. "
        "To select or edit what is found, use ground_and_segment."
    )
    args_model = GroundArgs
    words = ToolWords(
        verbs=("find", "detect", "locate", "spot", "search", "look for", "point out", "where be"),
        examples=("find the bench", "where is the dog?"),
        senses=("locate.v.01", "detect.v.01"),
        roles=(("query", "query"),),
    )
    gestures = ()

    def run(self, args: GroundArgs, ctx: ToolContext, backend: GroundingDinoBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        found = backend.detect(
            ctx,
            image,
            args.query,
            box_threshold=args.box_threshold,
            text_threshold=args.text_threshold,
            max_boxes=args.max_boxes,
        )
        data = {"query": args.query, "detections": [d.model_dump() for d in found]}
        if not found:
            return ToolOutput(text=f"Found nothing matching {args.query!r} in {args.image_path}.", data=data)
        listing = "; ".join(f"{d.phrase} at {_box_text(d.box)} (score {d.score:.2f})" for d in found)
        picture = NewArtifact(ArtifactKind.image, draw_detections(image, found), args.image_path, "found")
        return ToolOutput(text=f"Found {len(found)} in {args.image_path}: {listing}.", artifacts=[picture], data=data)


class GroundAndSegmentBackend(Backend):
    """GroundingDINO boxes refined into masks by SAM; both models must be present."""

    name = "groundingdino+sam"
    requires: ClassVar[tuple[str, ...]] = ("torch", "groundingdino", "transformers", "segment_anything")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = ("ground", "sam")

    def __init__(self, ground: GroundingDinoBackend, sam: SamSegmentBackend) -> None:
        self.ground = ground
        self.sam = sam

    def unavailable_reason(self, settings: Settings) -> str | None:
        return self.ground.unavailable_reason(settings) or self.sam.unavailable_reason(settings)


class GroundAndSam2Backend(GroundAndSegmentBackend):
    """GroundingDINO boxes refined into masks by SAM 2 (give it the SAM 2 backend); listed before
    the SAM one, so SAM 2 answers when both checkpoints are present."""

    name = "groundingdino+sam2"
    requires: ClassVar[tuple[str, ...]] = ("torch", "groundingdino", "transformers", "sam2")
    model_families: ClassVar[tuple[str, ...]] = ("ground", "sam2")


class GroundAndSegmentTool(Tool):
    name = "ground_and_segment"
    description = (
        "Select objects named in words: finds them (GroundingDINO) and cuts out their exact shapes (SAM). "
        "Give image_path and query, e.g. 'bench'. The mask of everything found becomes the active "
        "selection, ready for remove, replace or extract. Answers 'select the dog', 'remove the bench' "
        "when nothing is pointed at."
    )
    args_model = GroundArgs
    words = ToolWords(
        verbs=("select", "find and select", "mask"),
        examples=("select the bench",),
        roles=(("query", "query"),),
    )
    gestures = ()

    def run(self, args: GroundArgs, ctx: ToolContext, backend: GroundAndSegmentBackend) -> ToolOutput:
        image = ctx.read_image(args.image_path)
        found = backend.ground.detect(
            ctx,
            image,
            args.query,
            box_threshold=args.box_threshold,
            text_threshold=args.text_threshold,
            max_boxes=args.max_boxes,
        )
        if not found:
            raise InvalidInput(
                f"found nothing matching {args.query!r} in {args.image_path}; try other words, a lower "
                "box_threshold, or point at the object",
                code="nothing_found",
            )
        masks = backend.sam.predict_boxes(ctx, args.image_path, image, [d.box for d in found])
        selection = np.logical_or.reduce([m.mask for m in masks])
        if not selection.any():
            raise InvalidInput(
                f"SAM made empty masks for the {len(found)} boxes of {args.query!r}; point at the object instead",
                code="empty_mask",
            )
        artifacts = [NewArtifact(ArtifactKind.mask, selection, args.image_path, _stem(args.query), role="selection")]
        if len(found) > 1:
            artifacts += [
                NewArtifact(ArtifactKind.mask, m.mask, args.image_path, f"{_stem(d.phrase)}{i + 1}")
                for i, (d, m) in enumerate(zip(found, masks, strict=True))
            ]
        objects = [
            {**d.model_dump(), "mask_score": round(m.score, 4), "area": int(m.mask.sum())}
            for d, m in zip(found, masks, strict=True)
        ]
        names = ", ".join(f"{d.phrase} at {_box_text(d.box)}" for d in found)
        text = (
            f"Selected {len(found)} object(s) matching {args.query!r} in {args.image_path}: {names}. "
            "Their mask is the active selection (the first artifact)"
            + ("; the next artifacts are one mask per object." if len(found) > 1 else ".")
        )
        return ToolOutput(text=text, artifacts=artifacts, data={"query": args.query, "objects": objects})


def _box_text(box: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(str(round(v)) for v in box) + ")"


def _stem(text: str) -> str:
    words = "_".join(w for w in "".join(c if c.isalnum() else " " for c in text.lower()).split())
    return words[:40] or "found"

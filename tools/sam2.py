"""SAM 2 (Meta's ``sam2`` package): the ``sam2`` backend of ``segment``, ``segment_everything``
and ``ground_and_segment``, beside SAM.

Checkpoints (never downloaded) live in ``<model_dir>/sam2/``:

* an official SAM 2.1 or SAM 2 checkpoint, ``sam2.1_hiera_large.pt``, ``sam2.1_hiera_base_plus.pt``,
  ``sam2.1_hiera_small.pt``, ``sam2.1_hiera_tiny.pt`` (or the same names without ``.1``); the
  largest present wins, its architecture is the package's own config of that name;
* or ``sam2_config.json`` naming a checkpoint file in the same folder, the package config it
  starts from and Hydra overrides of its sizes (:class:`Sam2Config`), for custom or tiny
  models, e.g. the tests' ``{"name": "tiny", "checkpoint": "sam2_tiny.pt", "base":
  "sam2.1_hiera_t", "overrides": {"model.image_encoder.trunk.embed_dim": 8, ...}}``. A
  checkpoint is ``{"model": state_dict}`` as the official files are (a bare state dict loads too).

Everything else is :class:`~igpt_tools.sam.SamSegmentBackend`'s: the image embedding is computed
once per (session, image) and kept in the same bounded LRU (``IGPT_POOL__SAM_EMBEDDING_CACHE``),
a click costs only the decoder, a single click picks the best of three masks, box + points
give one mask, the automatic mask generator (``SAM2AutomaticMaskGenerator``) runs at a
1024-pixel long side, and every call goes through the pool's out-of-memory policy. The model
is the family ``sam2`` (``IGPT_DEVICES=sam2=cuda:0``, ``IGPT_DTYPES=sam2=bf16``; by default its
image encoder runs in bf16 on a GPU, fp32 on the CPU).

Which of SAM and SAM 2 answers: the tools list SAM 2 first, so with both checkpoints present
SAM 2 is used (faster; SAM 1 vit_h is sometimes more precise on fine structures);
``IGPT_BACKENDS=segment=sam,segment_everything=sam,ground_and_segment=groundingdino+sam``
chooses SAM, and with only one of them in the model directory that one is used.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from igpt_server.errors import ToolUnavailable
from igpt_server.models.pool import PooledModule
from igpt_tools.sam import (
    Embedding,
    Everything,
    SamPrediction,
    SamSegmentBackend,
    configured_checkpoint,
    run_encoder_in,
)

log = logging.getLogger(__name__)

SAM2_SUBDIR = "sam2"
CONFIG_FILE = "sam2_config.json"
#: official checkpoints, largest first: file stem -> the package's config (under configs/)
OFFICIAL: dict[str, str] = {
    f"{version}_hiera_{size}": f"{version}/{version}_hiera_{short}"
    for size, short in (("large", "l"), ("base_plus", "b+"), ("small", "s"), ("tiny", "t"))
    for version in ("sam2.1", "sam2")
}
OFFICIAL_FILES = "sam2.1_hiera_large.pt, sam2.1_hiera_base_plus.pt, sam2.1_hiera_small.pt or sam2.1_hiera_tiny.pt"
#: the package configs a sam2_config.json may start from
BASES = tuple(config.split("/", 1)[1] for config in OFFICIAL.values())


#: a ``sam2_config.json`` for a tiny random SAM 2 (tests, ``bench/gpu.py --smoke``): SAM 2.1 tiny's
#: config with every size shrunk (0.8 M parameters); the predictor's feature sizes are fixed
#: for a 1024-pixel input, so the image size stays
TINY_SAM2: dict[str, Any] = {
    "name": "tiny",
    "checkpoint": "sam2_tiny.pt",
    "base": "sam2.1_hiera_t",
    "overrides": {
        "model.image_encoder.trunk.embed_dim": 8,
        "model.image_encoder.trunk.stages": [1, 1, 2, 1],
        "model.image_encoder.trunk.global_att_blocks": [3],
        "model.image_encoder.neck.d_model": 32,
        "model.image_encoder.neck.backbone_channel_list": [64, 32, 16, 8],
        "model.image_encoder.neck.position_encoding.num_pos_feats": 32,
        "model.memory_attention.d_model": 32,
        "model.memory_attention.num_layers": 1,
        "model.memory_attention.layer.d_model": 32,
        "model.memory_attention.layer.dim_feedforward": 32,
        "model.memory_attention.layer.self_attention.embedding_dim": 32,
        "model.memory_attention.layer.cross_attention.embedding_dim": 32,
        "model.memory_attention.layer.cross_attention.kv_in_dim": 16,
        "model.memory_encoder.out_dim": 16,
        # the memory encoder reads the neck's features (the video predictor's path)
        "model.memory_encoder.in_dim": 32,
        "model.memory_encoder.mask_downsampler.embed_dim": 32,
        "model.memory_encoder.fuser.layer.dim": 32,
        "model.memory_encoder.position_encoding.num_pos_feats": 16,
    },
}


class Sam2Config(BaseModel):
    """A custom SAM 2 checkpoint (``sam2_config.json``): a package config plus Hydra overrides."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("custom", pattern=r"^[a-z0-9_]{1,32}$", description="shown in the model key sam2.<name>")
    checkpoint: str = Field(pattern=r"^[A-Za-z0-9_.+-]+\.(pth|pt|bin)$", description="file name in the sam2 folder")
    base: str = Field("sam2.1_hiera_l", description=f"the package config it starts from: one of {', '.join(BASES)}")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description='Hydra overrides of the base config, e.g. {"model.image_encoder.trunk.embed_dim": 8}',
    )

    def config_name(self) -> str:
        """The package config path, ``configs/sam2.1/sam2.1_hiera_l.yaml``."""
        if self.base not in BASES:
            raise ToolUnavailable(f"{CONFIG_FILE}: unknown base {self.base!r}; use one of {', '.join(BASES)}")
        version = self.base.split("_hiera_", 1)[0]
        return f"configs/{version}/{self.base}.yaml"

    def hydra_overrides(self) -> list[str]:
        """``++key=value`` overrides (values written as JSON, which Hydra's grammar reads)."""
        return [f"++{key}={json.dumps(value)}" for key, value in self.overrides.items()]


@dataclass(frozen=True)
class Sam2Checkpoint:
    path: Path
    config: Sam2Config

    @property
    def key(self) -> str:
        """The model pool key, ``sam2.<name>``."""
        return f"sam2.{self.config.name}"


def find_checkpoint(model_dir: Path | None) -> Sam2Checkpoint:
    """The SAM 2 checkpoint of the model directory, or :class:`ToolUnavailable` naming where it looked."""
    if model_dir is None:
        raise ToolUnavailable(
            f"SAM 2 needs a checkpoint: set IGPT_MODEL_DIR and put {OFFICIAL_FILES} in <model_dir>/{SAM2_SUBDIR}/"
        )
    folder = Path(model_dir) / SAM2_SUBDIR
    configured = configured_checkpoint(folder / CONFIG_FILE, Sam2Config, "SAM 2")
    if configured is not None:
        return Sam2Checkpoint(*configured)
    for stem, base in OFFICIAL.items():
        path = folder / f"{stem}.pt"
        if path.is_file():
            name = stem.replace(".", "_").replace("_hiera", "")
            return Sam2Checkpoint(path, Sam2Config(name=name, checkpoint=path.name, base=base.split("/", 1)[1]))
    raise ToolUnavailable(
        f"no SAM 2 checkpoint in {folder}: put {OFFICIAL_FILES} there (or a {CONFIG_FILE} naming a checkpoint)"
    )


def build_sam2_model(config: Sam2Config) -> Any:
    """An untrained ``sam2.modeling.sam2_base.SAM2Base`` of the config (eval mode, CPU, fp32),
    with the package's post-processing (a single mask falls back to the most stable of three)."""
    from sam2.build_sam import build_sam2

    return build_sam2(config.config_name(), None, device="cpu", hydra_overrides_extra=config.hydra_overrides())


def load_weights(model: Any, checkpoint: Sam2Checkpoint, purpose: str = "") -> None:
    """Load ``checkpoint``'s state dict (Meta's ``{"model": ...}`` or a bare one) into ``model``
    (a ``SAM2Base``); :class:`ToolUnavailable` naming the file when it does not fit."""
    import torch

    try:
        state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    except Exception as exc:  # a truncated file or the wrong architecture
        raise ToolUnavailable(
            f"cannot load the SAM 2 checkpoint {checkpoint.path.name} ({checkpoint.path}) as "
            f"{checkpoint.config.base}{purpose}: {type(exc).__name__}: {str(exc)[:300]}; check the file "
            f"(or the base and overrides in {CONFIG_FILE})"
        ) from None


def load_sam2(checkpoint: Sam2Checkpoint, device: str, dtype: str) -> PooledModule[Any]:
    """Build the architecture, load the weights, place it; the image encoder runs in ``dtype``.

    The pool holds the package's ``SAM2ImagePredictor`` (``obj``) over the network.
    """
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from igpt_server.models.pool import torch_dtype

    model = build_sam2_model(checkpoint.config)
    load_weights(model, checkpoint)
    model.to(device)
    if dtype != "fp32":
        run_encoder_in(model.image_encoder, torch_dtype(dtype))
    log.info("SAM 2 %s loaded from %s on %s (encoder %s)", checkpoint.config.name, checkpoint.path, device, dtype)
    return PooledModule(SAM2ImagePredictor(model), [model], device=device, dtype=dtype, on_move=_forget_image)


def _forget_image(predictor: Any, _device: str) -> None:
    predictor.reset_predictor()


class Sam2SegmentBackend(SamSegmentBackend):
    """The ``sam2`` backend: :class:`SamSegmentBackend` on SAM 2's predictor (see the module docstring)."""

    name = "sam2"
    requires: ClassVar[tuple[str, ...]] = ("torch", "sam2", "hydra")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = ("sam2",)
    family: ClassVar[str] = "sam2"
    label: ClassVar[str] = "SAM 2"

    def find(self, model_dir: Path | None) -> Sam2Checkpoint:
        return find_checkpoint(model_dir)

    def load(self, checkpoint: Any, device: str, dtype: str) -> PooledModule[Any]:
        return load_sam2(checkpoint, device, dtype)

    def snapshot(self, predictor: Any) -> Embedding:
        features = predictor._features
        state = {
            "image_embed": features["image_embed"].detach().cpu(),
            "high_res_feats": [f.detach().cpu() for f in features["high_res_feats"]],
        }
        return Embedding(state, tuple(predictor._orig_hw[0]))

    def restore(self, predictor: Any, embedding: Embedding) -> None:
        device = predictor.device
        predictor._features = {
            "image_embed": embedding.state["image_embed"].to(device),
            "high_res_feats": [f.to(device) for f in embedding.state["high_res_feats"]],
        }
        predictor._orig_hw = [embedding.original_size]
        predictor._is_image_set = True
        predictor._is_batch = False

    def decode_boxes(self, predictor: Any, boxes: np.ndarray, shape: tuple[int, int]) -> list[SamPrediction]:
        masks, scores, _ = predictor.predict(box=boxes, multimask_output=False)
        masks = np.asarray(masks).reshape(len(boxes), -1, *shape)[:, 0]
        scores = np.asarray(scores).reshape(len(boxes), -1)[:, 0]
        return [SamPrediction(mask=m.astype(bool), score=float(s)) for m, s in zip(masks, scores, strict=True)]

    def mask_generator(self, predictor: Any, run: Everything) -> Any:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        return SAM2AutomaticMaskGenerator(
            predictor.model,
            points_per_side=run.points_per_side,
            points_per_batch=run.points_per_batch,
            pred_iou_thresh=run.pred_iou_thresh,
            stability_score_thresh=run.stability_score_thresh,
        )


def load_sam2_video(checkpoint: Sam2Checkpoint, device: str, dtype: str) -> PooledModule[Any]:
    """SAM 2's video predictor (``sam2.build_sam.build_sam2_video_predictor``) on ``checkpoint``.

    Same architecture and weights as :func:`load_sam2` (the video predictor is ``SAM2Base``
    with the tracking loop), built with the package's video post-processing (hole filling,
    binarised click masks in memory). ``dtype`` is applied by the caller as an autocast
    (:mod:`igpt_tools.video.sam2_track`), the weights stay fp32. The pool holds the
    ``SAM2VideoPredictor`` (``obj``).
    """
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(
        checkpoint.config.config_name(),
        None,
        device="cpu",
        hydra_overrides_extra=checkpoint.config.hydra_overrides(),
    )
    load_weights(predictor, checkpoint, purpose=" for video")
    predictor.to(device)
    predictor.eval()
    log.info("SAM 2 video %s loaded from %s on %s", checkpoint.config.name, checkpoint.path, device)
    return PooledModule(predictor, [predictor], device=device, dtype=dtype)

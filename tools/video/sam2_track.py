"""Following a selected object through a clip with SAM 2's video predictor (full tier).

The ``sam2-video`` backend of the ``track`` tool. Its checkpoint is the one the ``segment``
tool's SAM 2 backend uses (:func:`igpt_tools.sam2.find_checkpoint`: an official
``sam2.1_hiera_*.pt`` or a ``sam2_config.json`` in ``<model_dir>/sam2/``); when there is none,
the ``track`` tool uses the embedded OpenCV tracker (:mod:`igpt_tools.video.tracking`).

How a clip is fed to the predictor without holding it whole (``init_state`` would turn every
frame into a 3x1024x1024 float tensor, 12 MB each):

* The frames come in tracking order from a streamed decoder (forward from the selected frame
  to the end, then backward from it to the start, as the OpenCV tracker gets them) at the
  track tool's working size (640 px).
* They are taken :data:`CHUNK_FRAMES` at a time. Each chunk is written as numbered JPEGs to
  a scratch folder, ``init_state`` reads it (frames kept on the CPU, the chunk's memories on
  the model's device), the object is given on
  the chunk's first frame with ``add_new_mask`` and ``propagate_in_video`` runs over the
  chunk. The backward direction is the same run on frames in reverse time order, which is
  what ``propagate_in_video(reverse=True)`` does inside one state.
* The next chunk starts with the previous chunk's last frame and its mask (so the track is
  continuous); the memory bank restarts there. Long-range re-identification across chunks
  is lost for it, but memory stays bounded: one chunk of frames and its memories.

An empty mask on a frame (SAM 2 judges the object hidden) is kept as empty, and tracking goes
on; when the object is absent through a whole chunk the track is reported lost from there.
The ``refine`` argument of the tool is not needed here (SAM 2 re-segments every frame).

Quality: with real weights this is SAM 2's tracking, far steadier than Lucas-Kanade on
deforming or occluded objects. The tests run tiny random-weight models built from the
package's config, which prove the plumbing (one HxW bool mask per frame, on CPU), not the
quality.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from igpt_server.errors import ToolUnavailable
from igpt_server.models.pool import PooledModule
from igpt_server.settings import Settings
from igpt_server.tooling.interface import Backend, ToolContext
from igpt_tools.sam2 import Sam2Checkpoint, find_checkpoint, load_sam2_video
from igpt_tools.video.tracking import Step

#: frames per predictor state (about 12 MB each on the CPU while the chunk runs)
CHUNK_FRAMES = 32
#: quality of the scratch JPEGs the predictor reads
JPEG_QUALITY = 95


class Sam2VideoBackend(Backend):
    """The ``sam2-video`` backend of ``track``: SAM 2's video predictor (see the module docstring)."""

    name = "sam2-video"
    requires: ClassVar[tuple[str, ...]] = ("torch", "sam2", "hydra", "av", "cv2")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = ("sam2",)
    family: ClassVar[str] = "sam2"

    def __init__(self, chunk_frames: int = CHUNK_FRAMES) -> None:
        if chunk_frames < 2:
            raise ValueError("chunk_frames must be at least 2 (a seed frame and one more)")
        self.chunk_frames = chunk_frames

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is not None:
            return reason
        try:
            find_checkpoint(settings.model_dir)
        except ToolUnavailable as exc:
            return f"{exc.message} (until then track uses the embedded OpenCV tracker)"
        return None

    def follow(self, ctx: ToolContext, frames: Iterable[tuple[float, np.ndarray]], first: np.ndarray) -> Iterator[Step]:
        """Track ``first`` (HxW bool on the first frame) through ``frames`` ((time, HxWx3 uint8
        RGB) pairs of one size, in tracking order). Yields one :class:`Step` per frame, the first
        included, each with an HxW bool mask (maybe empty); a ``None`` mask ends it (lost)."""
        checkpoint = find_checkpoint(ctx.settings.model_dir)
        if not first.any():
            raise ValueError("the first mask selects nothing")
        seed_time, seed_image, seed = None, None, first
        chunk: list[tuple[float, np.ndarray]] = []
        for time, image in frames:
            if seed_image is None:
                seed_time, seed_image = time, image
                yield Step(time, first)
                continue
            chunk.append((time, image))
            if len(chunk) == self.chunk_frames - 1:
                assert seed_time is not None
                masks = self._chunk(ctx, checkpoint, [(seed_time, seed_image), *chunk], seed)
                yield from (Step(t, m) for (t, _), m in zip(chunk, masks, strict=True))
                found = [m for m in masks if m.any()]
                if not found:
                    yield Step(chunk[-1][0], None, "SAM 2 saw the object nowhere for a whole stretch of frames")
                    return
                seed_time, seed_image, seed = chunk[-1][0], chunk[-1][1], found[-1]
                chunk = []
        if chunk:
            assert seed_time is not None and seed_image is not None
            masks = self._chunk(ctx, checkpoint, [(seed_time, seed_image), *chunk], seed)
            yield from (Step(t, m) for (t, _), m in zip(chunk, masks, strict=True))

    def _chunk(
        self, ctx: ToolContext, checkpoint: Sam2Checkpoint, frames: list[tuple[float, np.ndarray]], seed: np.ndarray
    ) -> list[np.ndarray]:
        """Masks (HxW bool) of ``frames[1:]``, the object given by ``seed`` on ``frames[0]``."""
        folder = Path(tempfile.mkdtemp(prefix="igpt_sam2_"))
        try:
            for index, (_, image) in enumerate(frames):
                Image.fromarray(image).save(folder / f"{index:05d}.jpg", quality=JPEG_QUALITY)
            return self._run(ctx, checkpoint, lambda predictor: _propagate(predictor, folder, seed, len(frames)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _run(self, ctx: ToolContext, checkpoint: Sam2Checkpoint, work: Any) -> list[np.ndarray]:
        """``work(predictor)`` under the pool's lock and out-of-memory policy (one call per chunk)."""
        import torch

        device = ctx.pool.device_for(self.family)
        dtype = ctx.pool.dtype_for(self.family, device, gpu_default="bf16")
        key = f"{checkpoint.key}.video"

        def attempt(model: PooledModule[Any]) -> list[np.ndarray]:
            autocast: Any = contextlib.nullcontext()
            if device.startswith("cuda") and dtype in ("bf16", "fp16"):
                autocast = torch.autocast("cuda", dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)
            with torch.inference_mode(), autocast:
                result: list[np.ndarray] = work(model.obj)
                return result

        return ctx.pool.run(
            key,
            lambda target: load_sam2_video(checkpoint, target, dtype),
            attempt,
            backend=self.name,
            device=device,
            dtype=dtype,
        )


def _propagate(predictor: Any, folder: Path, seed: np.ndarray, count: int) -> list[np.ndarray]:
    """Masks (HxW bool) of frames 1..count-1 of the JPEG folder, ``seed`` given on frame 0."""
    state = predictor.init_state(str(folder), offload_video_to_cpu=True)
    try:
        predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=seed)
        masks: dict[int, np.ndarray] = {}
        for index, _ids, logits in predictor.propagate_in_video(state, start_frame_idx=0):
            masks[index] = (logits[0, 0] > 0.0).cpu().numpy()
    finally:
        predictor.reset_state(state)
    return [masks[i] for i in range(1, count)]

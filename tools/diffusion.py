"""Shared plumbing of the diffusion tools (inpaint/remove, replace, generate).

Where checkpoints are found (never downloaded while serving a request):

* ``<model_dir>/<subdir>/`` first, where ``model_dir`` is ``settings.model_dir``
  (``IGPT_MODEL_DIR``), then
* the local Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) for the well-known repo ids
  listed by each tool, read with ``local_files_only=True``.

Devices and dtypes come from the model pool (``IGPT_DEVICES``/``IGPT_DTYPES`` per family:
``inpaint``, ``generate``): fp16 on CUDA by default, fp32 on the CPU. Pipelines go into the
pool as they are (it measures and moves their ``components``); controlnet-aux detectors are
wrapped in :class:`TorchBundle` so their weights are counted too. GPU out-of-memory during
a request is retried once at a smaller working size (:func:`retry_smaller_on_oom`), then
reported as a 503.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from igpt_server.errors import ServiceUnavailable, ToolUnavailable
from igpt_server.models.pool import is_out_of_memory, torch_dtype
from igpt_server.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
#: longest prompt accepted (CLIP reads the first 77 tokens; longer text is a caller's mistake)
MAX_PROMPT_CHARS = 1000


def non_blank(value: str) -> str:
    """A prompt without surrounding spaces; a blank prompt is refused (pydantic validator body)."""
    value = value.strip()
    if not value:
        raise ValueError("the prompt is blank; describe what to paint")
    return value


def locate(settings: Settings, subdir: str, marker: str, hub_repos: Sequence[str] = ()) -> Path | None:
    """The folder holding ``marker`` (a file name) for ``subdir``, or None when absent.

    Looks in ``<model_dir>/<subdir>/`` and then in the Hugging Face cache snapshots of
    ``hub_repos`` (file-system checks only; cheap enough for ``unavailable_reason``).
    """
    if settings.model_dir is not None:
        local = Path(settings.model_dir) / subdir
        if (local / marker).is_file():
            return local
    for repo in hub_repos:
        cached = _hub_cached(repo, marker)
        if cached is not None:
            return cached
    return None


def _hub_cached(repo: str, filename: str) -> Path | None:
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return Path(found).parent if isinstance(found, str) else None


def missing_message(what: str, settings: Settings, subdir: str, needs: str, hub_repos: Sequence[str] = ()) -> str:
    """Why a checkpoint is missing and where to put it (for ``/api/tools`` and 503s)."""
    if settings.model_dir is None:
        where = f"IGPT_MODEL_DIR is not set; set it to a folder holding {subdir}/ ({needs})"
    else:
        where = f"looked for {needs} in {Path(settings.model_dir) / subdir}"
    hub = f" or the Hugging Face cache ({', '.join(hub_repos)})" if hub_repos else ""
    return f"no {what} checkpoint: {where}{hub}; nothing is downloaded at run time"


class TorchBundle:
    """A library object (a controlnet-aux detector) seen by the model pool as one model.

    ``parameters()``/``buffers()`` cover all its torch modules, ``to(device)`` moves them,
    so the model pool can measure and offload it like an ``nn.Module``.
    """

    def __init__(self, obj: Any, modules: Sequence[Any]) -> None:
        self.obj = obj
        self.modules = list(modules)

    def parameters(self) -> Iterator[Any]:
        return chain.from_iterable(m.parameters() for m in self.modules)

    def buffers(self) -> Iterator[Any]:
        return chain.from_iterable(m.buffers() for m in self.modules)

    def to(self, device: str) -> TorchBundle:
        for module in self.modules:
            module.to(device)
        return self


def retry_smaller_on_oom(
    run: Callable[[int], T], size: int, *, multiple: int, what: str, free: Callable[[], object] | None = None
) -> T:
    """``run(size)``; on GPU out-of-memory, ``free()`` and retry once at 3/4 of ``size``.

    ``size`` is the working resolution (long side, pixels); the retry is rounded down to
    ``multiple``. ``free`` makes room first (the pool's ``free(device, keep=key)`` evicts idle
    models and empties the CUDA cache). A second out-of-memory becomes
    :class:`ServiceUnavailable` (503); the model stays loaded and usable for the next request.
    """
    smaller = max(multiple, (size * 3 // 4) // multiple * multiple)
    try:
        return run(size)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        log.warning("%s ran out of GPU memory at %d px; retrying at %d px", what, size, smaller)
    _free(free)
    try:
        return run(smaller)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        _free(free)
        raise ServiceUnavailable(
            f"{what} ran out of GPU memory even at {smaller} px (first try {size} px); free GPU memory "
            "(fewer models per GPU in IGPT_DEVICES, a smaller IGPT_POOL__GPU_BUDGET_MB) or retry later",
            code="out_of_memory",
        ) from exc


def _free(free: Callable[[], object] | None) -> None:
    gc.collect()
    if free is not None:
        free()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def fit_size(width: int, height: int, long_side: int, multiple: int) -> tuple[int, int]:
    """(w, h) with the aspect of ``width``x``height``, long side ``long_side``, both multiples of ``multiple``."""
    scale = long_side / max(width, height)
    w = max(multiple, round(width * scale / multiple) * multiple)
    h = max(multiple, round(height * scale / multiple) * multiple)
    return w, h


def pipeline_geometry(pipe: Any) -> tuple[int, int]:
    """(native long side in pixels, size multiple) of a Stable Diffusion pipeline.

    Native: the UNet's ``sample_size`` times the VAE scale (512 for SD 1.5). Multiple: the
    VAE scale times the UNet's down-sampling (64 for SD 1.5), so every level divides evenly.
    """
    vae_scale = int(pipe.vae_scale_factor)
    levels = len(pipe.unet.config.block_out_channels) - 1
    sample = pipe.unet.config.sample_size
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    return int(sample) * vae_scale, vae_scale * 2**levels


def cpu_generator(seed: int) -> Any:
    """A seeded CPU generator: the same seed gives the same noise on every device."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def pipeline_loader(pipeline_class: str, path: Path, dtype: str, what: str) -> Callable[[str], Any]:
    """A pool loader of the diffusers pipeline ``pipeline_class`` (e.g. ``"StableDiffusionPipeline"``)
    from the local folder ``path``, in ``dtype``, without the safety checker; ``what`` names the
    model in the error when the folder is incomplete."""

    def load(device: str) -> Any:
        import diffusers

        try:
            pipe = getattr(diffusers, pipeline_class).from_pretrained(
                path,
                torch_dtype=torch_dtype(dtype),
                local_files_only=True,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        except (OSError, ValueError) as exc:
            raise ToolUnavailable(
                f"could not load {what} from {path}: {exc}; "
                "check that it is a complete diffusers folder (model_index.json, unet/, vae/, ...)"
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    return load

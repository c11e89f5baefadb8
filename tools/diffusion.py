"""Shared plumbing of the diffusion tools (inpaint/remove, replace, generate).

Where checkpoints are found (never downloaded while serving a request):

* ``<model_dir>/<subdir>/`` first, where ``model_dir`` is ``settings.model_dir``
  (``IGPT_MODEL_DIR``), then
* the local Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) for the well-known repo ids
  listed by each tool, read with ``local_files_only=True``.

Devices and dtypes come from the model pool (``IGPT_DEVICES``/``IGPT_DTYPES`` per family:
``inpaint``, ``generate``): fp16 on CUDA by default, fp32 on the CPU. Pipelines go into the
pool as :class:`~igpt_server.models.pool.PooledModule` values (their module ``components``
are measured and moved), controlnet-aux detectors too (their networks). A request runs under
the pool's one out-of-memory policy (:meth:`ModelPool.run`): retried once after freeing the
device, then once at 3/4 of the working size (:func:`smaller_size`), then a 503.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from igpt_server.errors import ToolUnavailable
from igpt_server.models.pool import PooledModule, torch_dtype
from igpt_server.settings import Settings

log = logging.getLogger(__name__)
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


def smaller_size(size: int, multiple: int) -> int:
    """The working size to retry at after running out of memory: 3/4 of ``size``, rounded down
    to ``multiple`` (at least ``multiple``)."""
    return max(multiple, (size * 3 // 4) // multiple * multiple)


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


def pipeline_loader(pipeline_class: str, path: Path, dtype: str, what: str) -> Callable[[str], PooledModule[Any]]:
    """A pool loader of the diffusers pipeline ``pipeline_class`` (e.g. ``"StableDiffusionPipeline"``)
    from the local folder ``path``, in ``dtype``, without the safety checker; ``what`` names the
    model in the error when the folder is incomplete. The pool holds it as a
    :class:`PooledModule` whose ``obj`` is the pipeline."""

    def load(device: str) -> PooledModule[Any]:
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
        return PooledModule(pipe.to(device), device=device, dtype=dtype)

    return load

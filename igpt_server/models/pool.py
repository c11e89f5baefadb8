"""The model pool: every model is loaded once, lazily, and shared by all sessions.

A tool asks the pool for a model by key with a loader function::

    with ctx.pool.use("sam.vit_h", loader, backend="sam", dtype="bf16") as model:
        ...

The part of the key before the first dot is the model's *family* (``sam``, ``ground``,
``vqa``, ``inpaint``, ``ocr``...): it names the model in the settings, so
``IGPT_DEVICES=sam=cuda:0,vqa=cuda:1`` places it and ``IGPT_DTYPES=sam=bf16`` sets its dtype
(:meth:`ModelPool.device_for`, :meth:`ModelPool.dtype_for`). The pool

* loads a model on first use with ``loader(device)`` and hands it out under the model's own
  lock, so concurrent requests queue instead of racing (the lock is re-entrant);
* keeps the weights of each device under a memory budget (``IGPT_POOL__GPU_BUDGET_MB``, by
  default ``IGPT_POOL__GPU_FRACTION`` of a GPU's memory; ``IGPT_POOL__CPU_BUDGET_MB`` for
  models placed on the CPU): before a model is loaded or moved back to its device, the least
  recently used idle models of that device are evicted. Eviction *offloads* a GPU model to
  the CPU (``model.to("cpu")``, kept warm within ``IGPT_POOL__OFFLOAD_MB``) and *unloads* it
  when it cannot be offloaded (no ``.to``, a CPU model, offload memory full). A model in use
  is never evicted;
* turns a GPU out-of-memory error into a :class:`~igpt_server.errors.ServiceUnavailable`
  after freeing the device (idle models evicted, CUDA cache emptied) and, while loading,
  retries once; the pool stays usable afterwards;
* describes every model for ``GET /api/models`` (:meth:`ModelPool.describe`) and the models
  of one backend for ``GET /api/tools`` (:meth:`ModelPool.describe_families`).

A model is anything: a torch module, a diffusers pipeline, a bundle object. Its memory is the
bytes of its tensors (``parameters()``/``buffers()``, or the modules of ``components`` for
diffusers pipelines); it can be offloaded when it has ``.to(device)``.
This module does not import torch at import time; devices and dtypes are resolved lazily.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from pydantic import BaseModel

from igpt_server.errors import ServiceUnavailable

if TYPE_CHECKING:
    from igpt_server.settings import Settings

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: where evicted GPU models are parked
OFFLOAD_DEVICE = "cpu"
DtypeName = Literal["fp32", "fp16", "bf16"]
_TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
T = TypeVar("T")


class ModelInfo(BaseModel):
    """One model as ``GET /api/models`` shows it.

    ``device`` is where the model runs; ``placement`` where its weights are now (the device,
    ``cpu`` when offloaded, null when unloaded). ``memory_bytes`` counts its weights.
    """

    key: str
    family: str
    backend: str
    device: str
    dtype: str | None
    loaded: bool
    state: Literal["unloaded", "loaded", "offloaded"]
    placement: str | None
    memory_bytes: int
    last_used: float | None
    in_use: bool
    loads: int
    evictions: int


class DeviceUsage(BaseModel):
    """Weights held on one device against its budget (null: unbounded)."""

    device: str
    used_bytes: int
    budget_bytes: int | None


class PoolStatus(BaseModel):
    """The pool as a whole: per-device usage, offloaded weights, every model."""

    devices: list[DeviceUsage]
    offloaded_bytes: int
    offload_budget_bytes: int
    models: list[ModelInfo]


@dataclass
class _Entry:
    key: str
    backend: str
    device: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    model: Any = None
    dtype: str | None = None
    placement: str | None = None
    memory_bytes: int = 0
    known_bytes: int = 0  # size at the last load, kept after unloading (a hint for the next load)
    last_used: float | None = None
    tick: int = 0  # LRU order
    users: int = 0
    loads: int = 0
    evictions: int = 0

    @property
    def family(self) -> str:
        return family_of(self.key)

    @property
    def resident(self) -> bool:
        return self.model is not None and self.placement == self.device

    @property
    def offloaded(self) -> bool:
        return self.model is not None and self.placement != self.device


def family_of(key: str) -> str:
    """``"sam.vit_h"`` -> ``"sam"``: the name of a model in the settings."""
    return key.split(".", 1)[0]


def resolve_device(requested: str) -> str:
    """``auto`` becomes ``cuda:0`` when a GPU is visible, else ``cpu``; ``cuda`` becomes ``cuda:0``."""
    if requested == "cuda":
        return "cuda:0"
    if requested != "auto":
        return requested
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str) -> Any:
    """The ``torch.dtype`` of ``fp32``/``fp16``/``bf16``."""
    import torch

    try:
        return getattr(torch, _TORCH_DTYPES[name])
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use fp32, fp16 or bf16") from None


def model_memory_bytes(model: Any) -> int:
    """Bytes of the tensors of a torch module, a bundle with ``parameters()``, or a diffusers
    pipeline (its ``components``); 0 for anything else."""
    components = getattr(model, "components", None)
    if isinstance(components, dict):
        return sum(model_memory_bytes(c) for c in components.values() if c is not model)
    total = 0
    for attr in ("parameters", "buffers"):
        tensors = getattr(model, attr, None)
        if callable(tensors):
            try:
                total += sum(t.numel() * t.element_size() for t in tensors())
            except TypeError:
                return 0
    return total


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` and the RuntimeErrors CUDA raises when full."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _movable(model: Any) -> bool:
    return callable(getattr(model, "to", None))


def _empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")  # never import torch just to free a cache it never filled
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelPool:
    """Lazy, shared, budgeted models. Thread-safe; see the module docstring."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self._gpu_totals: dict[str, int] = {}

    # settings -------------------------------------------------------------------------

    def device_for(self, family: str) -> str:
        """The resolved device of a model family (``IGPT_DEVICES``; ``auto`` by default)."""
        requested = self.settings.device_for(family) if self.settings is not None else "auto"
        return resolve_device(requested)

    def dtype_for(self, family: str, device: str, gpu_default: DtypeName = "fp16") -> DtypeName:
        """The dtype of a model family on ``device`` (``IGPT_DTYPES``).

        ``auto`` means fp32 on the CPU and ``gpu_default`` on a GPU (bf16 falls back to fp16
        on GPUs without bf16 support).
        """
        wanted = self.settings.dtype_for(family) if self.settings is not None else "auto"
        if wanted == "auto":
            if not device.startswith("cuda"):
                return "fp32"
            wanted = gpu_default
        if wanted == "bf16" and device.startswith("cuda") and not _cuda_supports_bf16():
            return "fp16"
        return wanted  # type: ignore[return-value]

    def budget_bytes(self, device: str) -> int | None:
        """The weight budget of ``device``; None means unbounded."""
        pool = self.settings.pool if self.settings is not None else None
        if device.startswith("cuda"):
            if pool is not None and pool.gpu_budget_mb is not None:
                return int(pool.gpu_budget_mb * MiB)
            total = self._gpu_total(device)
            fraction = pool.gpu_fraction if pool is not None else 0.8
            return None if total is None else int(total * fraction)
        if device == "cpu" and pool is not None and pool.cpu_budget_mb is not None:
            return int(pool.cpu_budget_mb * MiB)
        return None

    def offload_budget_bytes(self) -> int:
        mb = self.settings.pool.offload_mb if self.settings is not None else 8192
        return int(mb * MiB)

    def _gpu_total(self, device: str) -> int | None:
        if device not in self._gpu_totals:
            try:
                import torch

                self._gpu_totals[device] = int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
            except Exception:  # no CUDA here: no automatic budget
                return None
        return self._gpu_totals[device]

    # using a model ----------------------------------------------------------------------

    def _entry(self, key: str, backend: str, device: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(key=key, backend=backend, device=resolve_device(device))
                self._entries[key] = entry
            return entry

    @contextmanager
    def use(
        self,
        key: str,
        loader: Callable[[str], Any],
        *,
        backend: str,
        device: str | None = None,
        dtype: str | None = None,
    ) -> Iterator[Any]:
        """Yield the model ``key`` under its lock, loading it with ``loader(device)`` first.

        ``device`` defaults to the family's device from the settings; the first call fixes
        the model's device. ``dtype`` is what the loader uses (shown in ``/api/models``).
        A loader that raises leaves the entry unloaded, so the next call tries again. An
        out-of-memory error in the caller's block frees the device and becomes a
        :class:`ServiceUnavailable` (503).
        """
        entry = self._entry(key, backend, device or self.device_for(family_of(key)))
        with entry.lock:
            entry.users += 1  # from here on, making room for it never evicts it
            try:
                self._ready(entry, loader, dtype)
                entry.last_used = time.time()
                entry.tick = next(self._clock)
                yield entry.model
            except Exception as exc:
                if is_out_of_memory(exc):
                    self.free(entry.device, keep=entry.key)
                    raise ServiceUnavailable(
                        f"{entry.device} ran out of memory while running model {key!r}; idle models were "
                        "evicted, retry the request, use a smaller image, or give the model its own device "
                        f"(IGPT_DEVICES={entry.family}=...) or a smaller budget (IGPT_POOL__GPU_BUDGET_MB)",
                        code="out_of_memory",
                    ) from exc
                raise
            finally:
                entry.users -= 1

    def _ready(self, entry: _Entry, loader: Callable[[str], Any], dtype: str | None) -> None:
        """Make ``entry``'s model resident on its device (caller holds ``entry.lock``)."""
        if entry.resident:
            return
        if entry.offloaded:
            self._make_room(entry.device, entry.memory_bytes, keep=entry)
            entry.model = self._retry_on_oom(entry, lambda: _move(entry.model, entry.device), "moving back")
            entry.placement = entry.device
            return
        self._make_room(entry.device, entry.known_bytes, keep=entry)
        model = self._retry_on_oom(entry, lambda: loader(entry.device), "loading")
        entry.model, entry.placement, entry.dtype = model, entry.device, dtype
        entry.memory_bytes = entry.known_bytes = model_memory_bytes(model)
        entry.loads += 1
        log.info("loaded %s on %s (%s, %.1f MiB)", entry.key, entry.device, dtype, entry.memory_bytes / MiB)
        self._make_room(entry.device, 0, keep=entry)  # its real size is known now

    def _retry_on_oom(self, entry: _Entry, action: Callable[[], T], what: str) -> T:
        try:
            return action()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            log.warning("out of memory %s %s on %s; freeing the device and retrying", what, entry.key, entry.device)
        self.free(entry.device, keep=entry.key)
        try:
            return action()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            raise ServiceUnavailable(
                f"{entry.device} has no room for model {entry.key!r} ({entry.known_bytes / MiB:.0f} MiB) even after "
                "evicting idle models; place it on another device (IGPT_DEVICES="
                f"{entry.family}=cpu or cuda:N) or free GPU memory",
                code="out_of_memory",
            ) from exc

    # eviction ---------------------------------------------------------------------------

    def _make_room(self, device: str, incoming: int, keep: _Entry | None) -> None:
        """Evict least recently used idle models of ``device`` until ``incoming`` more bytes fit."""
        budget = self.budget_bytes(device)
        if budget is None:
            return
        while True:
            with self._lock:
                resident = [e for e in self._entries.values() if e.resident and e.device == device]
                used = sum(e.memory_bytes for e in resident)
                candidates = sorted((e for e in resident if e is not keep and e.users == 0), key=lambda e: e.tick)
            if used + incoming <= budget:
                return
            if not any(self._try_evict(e) for e in candidates):  # the oldest idle one that can go
                log.warning(
                    "%s is over its budget (%.0f of %.0f MiB) and every model on it is in use",
                    device,
                    (used + incoming) / MiB,
                    budget / MiB,
                )
                return

    def _try_evict(self, entry: _Entry, *, offload: bool = True) -> bool:
        """Evict ``entry`` unless another request holds it; True when it was evicted."""
        if not entry.lock.acquire(blocking=False):
            return False
        try:
            if entry.model is None or entry.users > 0:
                return False
            if offload and entry.resident and self._can_offload(entry):
                entry.model = _move(entry.model, OFFLOAD_DEVICE)
                entry.placement = OFFLOAD_DEVICE
                log.info("offloaded %s from %s to the CPU", entry.key, entry.device)
            else:
                entry.model = None
                entry.placement = None
                entry.memory_bytes = 0
                gc.collect()
                log.info("unloaded %s", entry.key)
            entry.evictions += 1
            _empty_cuda_cache()
            return True
        finally:
            entry.lock.release()

    def _can_offload(self, entry: _Entry) -> bool:
        """Whether ``entry`` can move to the CPU, evicting older offloaded models to make room."""
        if entry.device == OFFLOAD_DEVICE or not _movable(entry.model):
            return False
        budget = self.offload_budget_bytes()
        if entry.memory_bytes > budget:
            return False
        while True:
            with self._lock:
                # an offloaded model in use is on its way back to its device: it frees its CPU space
                parked = [e for e in self._entries.values() if e.offloaded and e.users == 0]
                used = sum(e.memory_bytes for e in parked)
                oldest = sorted((e for e in parked if e.users == 0), key=lambda e: e.tick)
            if used + entry.memory_bytes <= budget:
                return True
            if not any(self._try_evict(e, offload=False) for e in oldest):
                return False

    def free(self, device: str, *, keep: str | None = None) -> int:
        """Evict every idle model of ``device`` (except ``keep``) and empty the CUDA cache.

        Returns how many models were evicted. Backends call it before retrying after an
        out-of-memory error.
        """
        with self._lock:
            victims = [e for e in self._entries.values() if e.resident and e.device == device and e.key != keep]
        evicted = sum(self._try_evict(e) for e in sorted(victims, key=lambda e: e.tick))
        _empty_cuda_cache()
        return evicted

    def unload(self, key: str) -> None:
        """Drop the model ``key`` (waits until no request uses it)."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            with entry.lock:
                entry.model = None
                entry.placement = None
                entry.memory_bytes = 0
            gc.collect()
            _empty_cuda_cache()

    # describing -------------------------------------------------------------------------

    def describe(self) -> list[ModelInfo]:
        """Every model the pool has seen, loaded or not, in the order first used."""
        with self._lock:
            entries = list(self._entries.values())
        return [_info(e) for e in entries]

    def describe_families(self, families: Iterable[str]) -> list[ModelInfo]:
        """The models of the given families (a backend's ``model_families``, for ``/api/tools``)."""
        wanted = set(families)
        return [m for m in self.describe() if m.family in wanted]

    def status(self) -> PoolStatus:
        """Per-device usage against the budgets, offloaded bytes, every model."""
        models = self.describe()
        devices = sorted({m.device for m in models} | {m.placement for m in models if m.placement})
        usage = [
            DeviceUsage(
                device=d,
                used_bytes=sum(m.memory_bytes for m in models if m.state == "loaded" and m.device == d),
                budget_bytes=self.budget_bytes(d),
            )
            for d in devices
        ]
        return PoolStatus(
            devices=usage,
            offloaded_bytes=sum(m.memory_bytes for m in models if m.state == "offloaded"),
            offload_budget_bytes=self.offload_budget_bytes(),
            models=models,
        )


def _info(e: _Entry) -> ModelInfo:
    state: Literal["unloaded", "loaded", "offloaded"] = (
        "unloaded" if e.model is None else "loaded" if e.resident else "offloaded"
    )
    return ModelInfo(
        key=e.key,
        family=e.family,
        backend=e.backend,
        device=e.device,
        dtype=e.dtype,
        loaded=e.model is not None,
        state=state,
        placement=e.placement,
        memory_bytes=e.memory_bytes,
        last_used=e.last_used,
        in_use=e.users > 0,
        loads=e.loads,
        evictions=e.evictions,
    )


def _move(model: Any, device: str) -> Any:
    """``model.to(device)``; modules and pipelines return themselves, others may return a copy."""
    moved = model.to(device)
    return model if moved is None else moved


def _cuda_supports_bf16() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:
        return False


class PooledModule:
    """Base of what the pool holds when a torch module travels with other parts (a processor,
    input sizes): moving, memory accounting and offloading follow ``self.model``."""

    model: Any

    def to(self, device: str) -> Self:
        self.model.to(device)
        return self

    def parameters(self) -> Any:
        return self.model.parameters()

    def buffers(self) -> Any:
        return self.model.buffers()

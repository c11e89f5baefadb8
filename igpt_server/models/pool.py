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
* applies the one out-of-memory policy of the server (:meth:`ModelPool.run`): free the CUDA
  cache and evict the least recently used idle models of the device, retry once, then retry
  with smaller work where the tool can shrink it (:class:`Shrink`: a smaller working size,
  fewer points per batch), then answer a clear 503 (:class:`OutOfMemory`). The model stays
  loaded and the pool usable afterwards. A bare :meth:`ModelPool.use` block that runs out of
  memory frees the device and raises :class:`OutOfMemory` without retrying;
* runs a step next to a family's models with :meth:`ModelPool.call` (``fn(pool)``; here it is
  just a call): on Ray Serve (``IGPT_SERVING=ray``, :mod:`igpt_server.models.serving`) the
  pool is a ``RayModelPool`` that ships :meth:`~ModelPool.run`'s and :meth:`~ModelPool.call`'s
  functions to the family's deployment, routed by their ``affinity`` (an image's key);
* describes every model for ``GET /api/models`` (:meth:`ModelPool.describe`) and the models
  of one backend for ``GET /api/tools`` (:meth:`ModelPool.describe_families`).

Every model the pool holds is a :class:`PooledModule`: the library object a tool calls
(``obj``: a torch module, a diffusers pipeline, a SAM predictor, an EasyOCR reader...), the
torch modules that carry its weights, its device and dtype. Its memory is the bytes of those
modules' tensors; offloading moves those modules. A loader should return a
:class:`PooledModule` (then :meth:`ModelPool.use` yields it); anything else is wrapped in one
for the accounting and yielded as it was (memory 0 and no offload unless it is a torch
module or a diffusers pipeline).
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
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel

from igpt_server.errors import RetryLater, ServiceUnavailable
from igpt_server.tooling.progress import report

if TYPE_CHECKING:
    from igpt_server.settings import Settings

log = logging.getLogger(__name__)
#: One model is built at a time in the whole process: diffusers and transformers build models
#: under accelerate's ``init_empty_weights``, which patches ``nn.Module.register_parameter``
#: process-wide, so a network built in another thread meanwhile (SAM, HED) got parameters on
#: the ``meta`` device ("Cannot copy out of meta tensor"). Loads are disk- and CPU-bound anyway.
_CONSTRUCTION_LOCK = threading.RLock()

MiB = 1024 * 1024
#: where evicted GPU models are parked
OFFLOAD_DEVICE = "cpu"
DtypeName = Literal["fp32", "fp16", "bf16"]
_TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
T = TypeVar("T")
M = TypeVar("M")


class OutOfMemory(RetryLater, ServiceUnavailable):
    """A device ran out of memory even after the pool's out-of-memory policy (503, ``Retry-After``)."""

    code = "out_of_memory"
    retry_after = 5.0


@dataclass(frozen=True)
class Shrink(Generic[T]):
    """How a tool can do its work with less memory after an out-of-memory retry failed.

    ``work(model)`` is the same work made smaller (a smaller working size, fewer prompts per
    batch, a smaller detector input); ``what`` says how, for the log and the 503 message
    (e.g. ``"at 384 px instead of 512 px"``).
    """

    work: Callable[[Any], T]
    what: str


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
    serving: Literal["local", "ray"] = "local"
    replica: str | None = None


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
    model: PooledModule[Any] | None = None
    handle: Any = None  # what ``use`` yields: the loader's own return value
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
    """Bytes of the weights of a :class:`PooledModule`, a torch module or a diffusers pipeline
    (its module components); 0 for anything else."""
    return (model if isinstance(model, PooledModule) else PooledModule(model)).memory_bytes()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` and the RuntimeErrors CUDA raises when full."""
    if isinstance(exc, OutOfMemory) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")  # never import torch just to free a cache it never filled
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelPool:
    """Lazy, shared, budgeted models. Thread-safe; see the module docstring."""

    #: where the models run (:mod:`igpt_server.models.serving`); a local pool runs them here
    serving: Literal["local", "ray"] = "local"

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
        out-of-memory error while loading or in the caller's block frees the device (idle
        models evicted, the CUDA cache emptied) and becomes :class:`OutOfMemory` (503);
        :meth:`run` adds the retries.
        """
        entry = self._entry(key, backend, device or self.device_for(family_of(key)))
        with entry.lock:
            entry.users += 1  # from here on, making room for it never evicts it
            try:
                self._ready(entry, loader, dtype)
                entry.last_used = time.time()
                entry.tick = next(self._clock)
                yield entry.handle
            except Exception as exc:
                if is_out_of_memory(exc):
                    self.free(entry.device, keep=entry.key)
                    if isinstance(exc, OutOfMemory):
                        raise
                    raise OutOfMemory(
                        f"{entry.device} ran out of memory while running model {key!r}; idle models were "
                        "evicted, retry the request, use a smaller image, or give the model its own device "
                        f"(IGPT_DEVICES={entry.family}=...) or a smaller budget (IGPT_POOL__GPU_BUDGET_MB)"
                    ) from exc
                raise
            finally:
                entry.users -= 1

    def run(
        self,
        key: str,
        loader: Callable[[str], Any],
        work: Callable[[Any], T],
        *,
        backend: str,
        device: str | None = None,
        dtype: str | None = None,
        shrink: Shrink[T] | None = None,
        affinity: str | None = None,
    ) -> T:
        """``work(model)`` under the model's lock, with the server's one out-of-memory policy.

        ``affinity`` (an image's :func:`~igpt_server.models.serving.affinity_key`) routes the
        work to the replica that holds that image's state on Ray Serve; here it is unused.

        ``model`` is what :meth:`use` yields. When loading the model or running ``work`` runs
        out of memory: (1) the CUDA cache is emptied and the least recently used idle models of
        the device are evicted, (2) ``work`` runs once more, (3) if that runs out of memory
        too and the tool can shrink its work, ``shrink.work`` runs once (after freeing again),
        (4) :class:`OutOfMemory` (503) says what was tried and how to make room. Any other
        error passes through unchanged. Call it once per request step, not nested in itself.
        """
        attempts: list[tuple[str, Callable[[Any], T]]] = [("", work), ("after freeing the device", work)]
        if shrink is not None:
            attempts.append((shrink.what, shrink.work))
        last: OutOfMemory | None = None
        for how, attempt in attempts:
            if last is not None:
                log.warning("out of memory with %s; retrying %s", key, how)
            try:
                with self.use(key, loader, backend=backend, device=device, dtype=dtype) as model:
                    return attempt(model)
            except OutOfMemory as exc:
                last = exc
        assert last is not None
        tried = ", ".join(how for how, _ in attempts[1:])
        entry = self._entry(key, backend, device or self.device_for(family_of(key)))
        raise OutOfMemory(
            f"{entry.device} ran out of memory for model {key!r} even after evicting idle models and retrying "
            f"({tried}); retry later, use a smaller image, or give the model its own device "
            f"(IGPT_DEVICES={entry.family}=...) or a smaller budget for the others (IGPT_POOL__GPU_BUDGET_MB)",
            detail={"model": key, "device": entry.device, "tried": [how for how, _ in attempts[1:]]},
        ) from last

    def loaded(self, key: str) -> PooledModule[Any] | None:
        """The :class:`PooledModule` of ``key`` when it is loaded (resident or offloaded), else None."""
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry.model

    def _ready(self, entry: _Entry, loader: Callable[[str], Any], dtype: str | None) -> None:
        """Make ``entry``'s model resident on its device (caller holds ``entry.lock``)."""
        if entry.resident:
            return
        if entry.model is not None and entry.offloaded:
            self._make_room(entry.device, entry.memory_bytes, keep=entry)
            entry.model.to(entry.device)
            entry.placement = entry.device
            return
        report("loading", f"loading {entry.key} on {entry.device}", model=entry.key)
        self._make_room(entry.device, entry.known_bytes, keep=entry)
        with _CONSTRUCTION_LOCK:
            loaded = loader(entry.device)
        model = loaded if isinstance(loaded, PooledModule) else PooledModule(loaded, device=entry.device, dtype=dtype)
        entry.model, entry.handle, entry.placement = model, loaded, entry.device
        entry.dtype = dtype or model.dtype
        entry.memory_bytes = entry.known_bytes = model.memory_bytes()
        entry.loads += 1
        log.info("loaded %s on %s (%s, %.1f MiB)", entry.key, entry.device, dtype, entry.memory_bytes / MiB)
        self._make_room(entry.device, 0, keep=entry)  # its real size is known now

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
                entry.model.to(OFFLOAD_DEVICE)
                entry.placement = OFFLOAD_DEVICE
                log.info("offloaded %s from %s to the CPU", entry.key, entry.device)
            else:
                entry.model = entry.handle = None
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
        if entry.device == OFFLOAD_DEVICE or entry.model is None or not entry.model.movable:
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
                entry.model = entry.handle = None
                entry.placement = None
                entry.memory_bytes = 0
            gc.collect()
            _empty_cuda_cache()

    def call(self, family: str, fn: Callable[[ModelPool], T], *, affinity: str | None = None) -> T:
        """``fn(pool)`` where the models of ``family`` live: here, ``fn(self)``.

        For a step that reads or fills a per-image cache next to its model (a region
        hierarchy, an embedding): on Ray Serve (:class:`igpt_server.models.ray_serving.RayModelPool`)
        ``fn`` runs in a replica of the family's deployment with that replica's pool, on the
        replica ``affinity`` routes to. ``fn`` must not capture unpicklable state there.
        """
        return fn(self)

    def check(self) -> str:
        """Where the models run, for ``/api/ready``; raises when that place cannot be reached
        (a local pool always can)."""
        return "models run in this process"

    def close(self) -> None:
        """Release what the pool holds outside this process (nothing for a local pool)."""

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


def _cuda_supports_bf16() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:
        return False


class PooledModule(Generic[M]):
    """What the pool holds for every model: the object a tool calls and the weights behind it.

    ``obj`` is the library object (a torch module, a diffusers pipeline, a SAM predictor, an
    EasyOCR reader, a controlnet-aux detector...); ``modules`` are the torch modules that
    carry its weights (default: ``obj`` itself when it is a module, the module components of
    a diffusers pipeline). ``device`` is where the weights are now, ``dtype`` the precision
    they were loaded in (``fp32``/``fp16``/``bf16``, None when not a torch model).

    :meth:`to` moves the modules (and a pipeline's own bookkeeping) and then calls
    ``on_move(obj, device)`` so objects that cache device state (a predictor's features)
    can drop it; :meth:`memory_bytes` counts the modules' parameters and buffers once each.
    Subclasses add the parts a tool needs beside the network (a processor, input sizes).
    """

    def __init__(
        self,
        obj: M,
        modules: Iterable[Any] | None = None,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        on_move: Callable[[M, str], None] | None = None,
    ) -> None:
        self.obj = obj
        self.modules = list(modules) if modules is not None else _weight_modules(obj)
        self.device = device
        self.dtype = dtype
        self.on_move = on_move

    @property
    def movable(self) -> bool:
        """Whether :meth:`to` moves any weights (False: offloading would free nothing)."""
        return bool(self.modules)

    def to(self, device: str) -> Self:
        if _is_pipeline(self.obj) and callable(getattr(self.obj, "to", None)):
            self.obj.to(device)  # type: ignore[attr-defined]
        else:
            for module in self.modules:
                module.to(device)
        self.device = device
        if self.on_move is not None:
            self.on_move(self.obj, device)
        return self

    def parameters(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(m.parameters() for m in self.modules)

    def buffers(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(m.buffers() for m in self.modules)

    def memory_bytes(self) -> int:
        """Bytes of the weights (parameters and buffers; a tensor shared by two modules once)."""
        seen: set[int] = set()
        total = 0
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
        return total


def _is_pipeline(obj: Any) -> bool:
    """A diffusers-style pipeline: its weights are the modules of its ``components``."""
    return isinstance(getattr(obj, "components", None), dict)


def _weight_modules(obj: Any) -> list[Any]:
    """The torch modules of ``obj``: its pipeline components that have weights, or ``obj`` itself."""
    if _is_pipeline(obj):
        return [c for c in obj.components.values() if c is not obj and callable(getattr(c, "parameters", None))]
    if callable(getattr(obj, "parameters", None)) and callable(getattr(obj, "to", None)):
        return [obj]
    return []

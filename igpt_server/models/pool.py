"""The model pool: every model is loaded once, lazily, and shared by all sessions.

A tool asks the pool for a model by key (``"ocr.easyocr"``, ``"sam.vit_h"``) with a loader
function; the pool loads it on first use, remembers its device, dtype and memory, and hands
it out under the model's own lock, so concurrent requests queue instead of racing.
This module does not import torch; devices are resolved with a lazy import.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


class ModelInfo(BaseModel):
    """One model as ``GET /api/models`` shows it."""

    key: str
    backend: str
    device: str
    dtype: str | None
    loaded: bool
    memory_bytes: int
    last_used: float | None


@dataclass
class _Entry:
    key: str
    backend: str
    device: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    model: Any = None
    dtype: str | None = None
    memory_bytes: int = 0
    last_used: float | None = None


def resolve_device(requested: str) -> str:
    """``auto`` becomes ``cuda:0`` when a GPU is visible, else ``cpu``."""
    if requested != "auto":
        return requested
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def model_memory_bytes(model: Any) -> int:
    """Bytes of parameters and buffers of a torch module (0 for anything else)."""
    total = 0
    for attr in ("parameters", "buffers"):
        tensors = getattr(model, attr, None)
        if callable(tensors):
            try:
                total += sum(t.numel() * t.element_size() for t in tensors())
            except TypeError:
                return 0
    return total


class ModelPool:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

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
        device: str = "cpu",
        dtype: str | None = None,
    ) -> Iterator[Any]:
        """Yield the model ``key`` under its lock, loading it with ``loader(device)`` first.

        A loader that raises leaves the entry unloaded, so the next call tries again.
        """
        entry = self._entry(key, backend, device)
        with entry.lock:
            if entry.model is None:
                entry.model = loader(entry.device)
                entry.dtype = dtype
                entry.memory_bytes = model_memory_bytes(entry.model)
            entry.last_used = time.time()
            yield entry.model

    def unload(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            with entry.lock:
                entry.model = None
                entry.memory_bytes = 0

    def describe(self) -> list[ModelInfo]:
        with self._lock:
            entries = list(self._entries.values())
        return [
            ModelInfo(
                key=e.key,
                backend=e.backend,
                device=e.device,
                dtype=e.dtype,
                loaded=e.model is not None,
                memory_bytes=e.memory_bytes,
                last_used=e.last_used,
            )
            for e in entries
        ]

"""Where the models run: in this process (``IGPT_SERVING=local``) or on Ray Serve (``ray``).

The seam is the model pool. Every tool reaches its models through ``ctx.pool``:
``pool.run(key, loader, work, ...)`` (one model step under the pool's out-of-memory policy)
or ``pool.call(family, fn, affinity=...)`` (``fn(pool)`` next to the models of a family: a
step that also reads or fills a per-image cache). :func:`build_pool` picks the pool:

* ``local``: :class:`~igpt_server.models.pool.ModelPool` runs everything in this process,
  exactly as before; ``call`` is ``fn(self)``.
* ``ray``: :class:`igpt_server.models.ray_serving.RayModelPool` ships the same ``work`` /
  ``fn`` (cloudpickled by Ray) to the family's Serve deployment, whose replicas each hold a
  local ``ModelPool`` (device placement and the one OOM policy unchanged inside a replica).
  ``ray`` is imported only then: ``make run``'s embedded install has no ray.

Per-image state (the hed segmenter's region hierarchy, SAM's image embedding) must be read
and written *inside the replica* that has it, so that state lives in caches that belong to
the process (:func:`process_local`: one named object per process: the server's in local
mode, each replica's on Serve), and a backend whose cache would otherwise travel with a
pickled ``self`` re-binds it to the process-local cache when unpickled in a replica.
Requests about one image carry an ``affinity`` key (:func:`affinity_key`) that routes them
to the replica holding its state. Hits and misses of these caches are counted per process
(:func:`count_cache`, :func:`cache_stats`); a replica reports its own through its stats.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from igpt_server.errors import IgptError, RetryLater, ServiceUnavailable

if TYPE_CHECKING:
    from igpt_server.models.pool import ModelPool
    from igpt_server.settings import Settings

C = TypeVar("C")

_lock = threading.Lock()
_objects: dict[str, Any] = {}
_counts: dict[str, list[int]] = {}
#: the family this process serves when it is a Serve replica (None in the API server)
_replica_family: str | None = None


class ModelUnavailable(RetryLater, ServiceUnavailable):
    """A model replica died or could not be reached mid-request (503, ``Retry-After``)."""

    code = "model_unavailable"
    retry_after = 2.0


class ServingUnavailable(IgptError):
    """The configured model serving (the Ray cluster) cannot be reached at start-up."""

    status = 503
    code = "serving_unavailable"


class CacheCount(BaseModel):
    """Hits and misses of one per-image cache in one process; ``hit_rate`` null before any lookup."""

    hits: int
    misses: int
    hit_rate: float | None


def build_pool(settings: Settings) -> ModelPool:
    """The pool of ``settings.serving``: a local :class:`ModelPool`, or a :class:`RayModelPool`
    connected to the cluster of ``settings.ray`` (raises :class:`ServingUnavailable` naming
    ``IGPT_RAY__ADDRESS`` when it cannot be reached)."""
    if settings.serving == "ray":
        from igpt_server.models.ray_serving import RayModelPool

        return RayModelPool(settings)
    from igpt_server.models.pool import ModelPool

    return ModelPool(settings)


def affinity_key(session_id: str, image_path: str) -> str:
    """The routing key of one image: requests with the same key go to the same replica."""
    return f"{session_id}:{image_path}"


def process_local(name: str, factory: Callable[[], C]) -> C:
    """The one object called ``name`` of this process, made by ``factory()`` on first use.

    In the API server (local serving) that is the server's cache; in a Serve replica, the
    replica's own, which outlives the single request that unpickled the backend.
    """
    with _lock:
        if name not in _objects:
            _objects[name] = factory()
        obj: C = _objects[name]
        return obj


def count_cache(name: str, hit: bool) -> None:
    """Count one lookup of the per-image cache ``name`` in this process."""
    with _lock:
        counts = _counts.setdefault(name, [0, 0])
        counts[0 if hit else 1] += 1


def cache_stats() -> dict[str, CacheCount]:
    """Hits, misses and hit rate of every per-image cache of this process, by name."""
    with _lock:
        return {
            name: CacheCount(hits=h, misses=m, hit_rate=h / (h + m) if h + m else None)
            for name, (h, m) in _counts.items()
        }


def reset_cache_stats() -> None:
    """Zero this process's counts (a benchmark's or test's fresh start)."""
    with _lock:
        _counts.clear()


def enter_replica(family: str) -> None:
    """Mark this process as a Serve replica of ``family`` (called by the replica's constructor)."""
    global _replica_family
    _replica_family = family


def replica_family() -> str | None:
    """The family this process serves as a Serve replica, or None outside one."""
    return _replica_family

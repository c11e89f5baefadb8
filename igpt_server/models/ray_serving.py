"""Model families as Ray Serve deployments (``IGPT_SERVING=ray``); imported only in that mode.

Design (issue #14): the seam is the model pool, so no tool knows where its model runs.

* :class:`RayModelPool` is a :class:`~igpt_server.models.pool.ModelPool` whose
  :meth:`~RayModelPool.run` and :meth:`~RayModelPool.call` ship the tool's own ``loader`` /
  ``work`` / ``fn`` (cloudpickled by Ray) to the deployment of the model's *family* (the key's
  part before the first dot: ``ocr``, ``edges``, ``sam``, ``inpaint``...). Every family uses
  the same generic deployment, so models not exercised in CI (diffusers, grounding, VLMs)
  need no special case: configuring their family is enough.
* :class:`ModelReplica` is that deployment: one per family, named ``igpt-<family>``, with the
  family's :class:`~igpt_server.settings.DeploymentSettings` (``num_replicas``, or
  ``autoscaling_config`` from ``min_replicas``/``max_replicas``; ``ray_actor_options``
  ``num_gpus`` (fractions let small models share a GPU) and ``num_cpus``;
  ``max_ongoing_requests``). A replica holds its own local ``ModelPool`` and runs
  ``fn(pool)`` there on a worker thread, so device placement and the one out-of-memory
  policy are the local pool's.
* Per-image state: a request about one image carries its
  :func:`~igpt_server.models.serving.affinity_key` as Serve's ``multiplexed_model_id``;
  the replica "loads" that key with ``@serve.multiplexed`` (nothing but a marker, LRU of
  :data:`AFFINITY_SLOTS` keys), so Serve's router sends later requests about the image to
  the replica that has it, and the per-image caches (the hed segmenter's region hierarchy,
  SAM's embedding: :func:`~igpt_server.models.serving.process_local`) hit there. Multiplexing
  is Serve's own, supported router (a consistent-hash router would need Serve's custom
  request-router API and would reshuffle keys on every scale change); the router learns a
  replica's keys asynchronously, so a second request sent within milliseconds of the first
  may still land elsewhere (measured by bench/scale.py). ``IGPT_RAY__AFFINITY=false`` turns
  the routing off.
* Hits and misses are counted in each replica (:func:`~igpt_server.models.serving.count_cache`)
  and pushed with the replica's request counts to a small named actor (:class:`StatsBoard`)
  after every call; :meth:`RayModelPool.replica_stats` reads them, :meth:`RayModelPool.describe`
  lists the replicas' models for ``GET /api/models`` (``serving: "ray"``, ``replica``).
* Failures: a replica that dies mid-request (``RayActorError``, ``ActorDiedError``,
  ``ActorUnavailableError``) gives :class:`~igpt_server.models.serving.ModelUnavailable`
  (503, ``model_unavailable``, naming the family, "retry"); Serve's controller restarts the
  replica and the next request is answered by it. An error raised by the tool's own code in the
  replica (an ``IgptError`` such as an ``OutOfMemory`` 503) is re-raised here unchanged. A
  cluster that cannot be reached at start-up raises
  :class:`~igpt_server.models.serving.ServingUnavailable` naming ``IGPT_RAY__ADDRESS``.
* :meth:`RayModelPool.use` (a ``with`` block holding a model) cannot hold a remote model: it
  runs in this process with a local pool, logged once per key; the backends whose models are on
  Serve call :meth:`run`/:meth:`call` instead (edges, segment, OCR, SAM).
* Devices: a replica sees only the GPUs Ray gave it, so in ray mode a family's device is
  ``cuda:0`` when its deployment has ``num_gpus > 0`` and ``cpu`` otherwise, unless
  ``IGPT_DEVICES`` names one for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import ray
from pydantic import BaseModel, Field
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from igpt_server.models import serving
from igpt_server.models.pool import DtypeName, ModelInfo, ModelPool, Shrink, family_of
from igpt_server.models.serving import CacheCount, ModelUnavailable, ServingUnavailable

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from igpt_server.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: image keys a replica remembers for routing (Serve's multiplexing LRU)
AFFINITY_SLOTS = 256
#: the Ray namespace of the stats actor
NAMESPACE = "igpt"
STATS_ACTOR = "igpt-serving-stats"
#: the longest a request waits for its replica's answer
CALL_TIMEOUT_S = 600.0
#: replicas log warnings and errors, not one access line per call
_LOGGING = {"enable_access_log": False, "log_level": "WARNING"}


def app_name(family: str) -> str:
    """The Serve application (and deployment) of a model family: ``igpt-<family>``."""
    return f"igpt-{family}"


class ReplicaStats(BaseModel):
    """One replica as it last reported: requests served, in progress, its caches and models."""

    family: str
    replica: str = Field(description="Serve's replica id")
    actor_name: str = Field(description="the replica's Ray actor name (namespace 'serve')")
    pid: int
    requests: int
    ongoing: int
    caches: dict[str, CacheCount]
    models: list[ModelInfo]
    updated: float


@ray.remote(num_cpus=0)
class StatsBoard:
    """The last report of every replica, by replica id (a detached named actor)."""

    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}

    def report(self, replica: str, stats: dict[str, Any]) -> None:
        self.reports[replica] = stats

    def read(self) -> list[dict[str, Any]]:
        return list(self.reports.values())

    def forget(self, family: str) -> None:
        self.reports = {k: v for k, v in self.reports.items() if v["family"] != family}


def stats_board() -> Any:
    """The cluster's :class:`StatsBoard` (created on first use)."""
    return StatsBoard.options(  # type: ignore[attr-defined]
        name=STATS_ACTOR, namespace=NAMESPACE, get_if_exists=True, lifetime="detached"
    ).remote()


@serve.deployment(name="ModelReplica")
class ModelReplica:
    """One replica of a family's deployment: a local model pool that runs shipped functions."""

    def __init__(self, family: str, settings: Settings) -> None:
        serving.enter_replica(family)
        self.family = family
        self.pool = ModelPool(settings)
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id
        self.actor_name = context.replica_id.to_full_id_str()
        self.requests = 0
        self.ongoing = 0
        self.board = stats_board()
        self._report()

    @serve.multiplexed(max_num_models_per_replica=AFFINITY_SLOTS)
    async def claim(self, key: str) -> str:
        """Remember an image key: Serve then routes that key's requests here."""
        return key

    async def __call__(self, fn: Callable[[ModelPool], Any]) -> Any:
        key = serve.get_multiplexed_model_id()
        if key:
            await self.claim(key)
        self.ongoing += 1
        self._report()
        try:
            return await asyncio.to_thread(fn, self.pool)
        finally:
            self.ongoing -= 1
            self.requests += 1
            self._report()

    def stats(self) -> ReplicaStats:
        return ReplicaStats(
            family=self.family,
            replica=self.replica,
            actor_name=self.actor_name,
            pid=os.getpid(),
            requests=self.requests,
            ongoing=self.ongoing,
            caches=serving.cache_stats(),
            models=[m.model_copy(update={"serving": "ray", "replica": self.replica}) for m in self.pool.describe()],
            updated=time.time(),
        )

    def _report(self) -> None:
        try:
            self.board.report.remote(self.replica, self.stats().model_dump(mode="json"))
        except Exception:  # the board is best effort: never fail a request over it
            log.debug("could not report replica stats", exc_info=True)


def connect(settings: Settings) -> None:
    """Join the cluster of ``settings.ray.address`` (or start a local Ray) and start Serve
    without an HTTP proxy (only handles reach the deployments)."""
    address = settings.ray.address
    try:
        if not ray.is_initialized():
            if address:
                _probe(address)
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
            else:
                ray.init(num_cpus=settings.ray.num_cpus, include_dashboard=False, namespace=NAMESPACE)
        serve.start(proxy_location="Disabled")
    except Exception as exc:
        where = f"at {address!r}" if address else "started locally"
        raise ServingUnavailable(
            f"IGPT_SERVING=ray but the Ray cluster {where} cannot be reached ({type(exc).__name__}: {exc}); "
            "set IGPT_RAY__ADDRESS to the head's address (auto, or ray://HOST:10001), start the cluster "
            "(ray start --head), or use IGPT_SERVING=local"
        ) from exc


#: how long :func:`_probe` waits for the cluster's port
PROBE_TIMEOUT_S = 5.0


def _running_app(name: str) -> DeploymentHandle | None:
    """The handle of the Serve application ``name`` when it is already running on the cluster.

    Every API replica reuses the deployments the first one made instead of redeploying them
    (``serve.run`` would roll every replica, dropping their caches). New deployment settings
    therefore apply when the application is gone: ``serve delete igpt-<family>`` (or
    ``serve shutdown``) and the next request deploys it anew. Two API replicas starting at the
    same instant may both deploy once; the second roll is harmless.
    """
    try:
        status = serve.status().applications.get(name)
    except Exception:  # no Serve controller yet: nothing is running
        return None
    if status is None or status.status != "RUNNING":  # ApplicationStatus is a str enum
        return None
    return serve.get_app_handle(name)


def _probe(address: str) -> None:
    """Fail fast when a ``host:port`` or ``ray://host:port`` address does not accept connections
    (``ray.init`` itself retries an unreachable GCS for minutes); ``auto`` is left to Ray."""
    import socket

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
        pass


class RayModelPool(ModelPool):
    """A pool whose models run in the replicas of one Serve deployment per family (module docstring)."""

    serving = "ray"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.settings: Settings = settings
        connect(settings)
        self._handles: dict[str, DeploymentHandle] = {}
        self._deploy_lock = threading.Lock()
        self._warned: set[str] = set()

    # deployments ------------------------------------------------------------------------

    def deployment_options(self, family: str) -> dict[str, Any]:
        """The ``Deployment.options`` of ``family`` from its :class:`DeploymentSettings`."""
        d = self.settings.ray.deployment_for(family)
        options: dict[str, Any] = {
            "max_ongoing_requests": d.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
        }
        if d.max_replicas is not None:
            low = d.min_replicas if d.min_replicas is not None else 1
            options["autoscaling_config"] = {
                "min_replicas": low,
                "initial_replicas": max(low, 1),
                "max_replicas": d.max_replicas,
                "target_ongoing_requests": max(1, d.max_ongoing_requests // 2),
            }
        else:
            options["num_replicas"] = d.num_replicas
        return options

    def handle(self, family: str) -> DeploymentHandle:
        """The handle of ``family``'s deployment, deploying it (and waiting for its replicas) first."""
        with self._deploy_lock:
            if family not in self._handles and (running := _running_app(app_name(family))) is not None:
                self._handles[family] = running  # deployed by another API replica (or an earlier run)
            if family not in self._handles:
                started = time.perf_counter()
                app = ModelReplica.options(**self.deployment_options(family)).bind(family, self.settings)  # type: ignore[attr-defined]
                try:
                    self._handles[family] = serve.run(
                        app, name=app_name(family), route_prefix=None, logging_config=_LOGGING
                    )
                except Exception as exc:
                    raise ModelUnavailable(
                        f"could not start the Ray Serve deployment of model family {family!r} "
                        f"({type(exc).__name__}: {exc}); check IGPT_RAY__DEPLOYMENTS (num_gpus, num_cpus) against "
                        "the cluster's free resources, then retry"
                    ) from exc
                log.info("deployed %s in %.1f s", app_name(family), time.perf_counter() - started)
            return self._handles[family]

    def deploy(self, families: list[str]) -> None:
        """Deploy these families now (a warm-up), rather than on their first request."""
        for family in families:
            self.handle(family)

    # the pool interface -------------------------------------------------------------------

    def call(self, family: str, fn: Callable[[ModelPool], T], *, affinity: str | None = None) -> T:
        """``fn(pool)`` in a replica of ``family``'s deployment (the one ``affinity`` routes to)."""
        handle = self.handle(family)
        if affinity is not None and self.settings.ray.affinity:
            handle = handle.options(multiplexed_model_id=affinity)
        try:
            result: T = handle.remote(fn).result(timeout_s=CALL_TIMEOUT_S)
            return result
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, RayActorError):
                raise _unavailable(family, cause) from exc
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except (RayActorError, ActorUnavailableError) as exc:
            raise _unavailable(family, exc) from exc
        except TimeoutError as exc:
            raise ModelUnavailable(
                f"the Ray Serve deployment of model family {family!r} did not answer within {CALL_TIMEOUT_S:.0f} s; "
                "its replicas are overloaded or stuck: retry later, or give the family more replicas "
                "(IGPT_RAY__DEPLOYMENTS)",
                detail={"family": family, "deployment": app_name(family)},
            ) from exc

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
        """``work(model)`` in a replica of the key's family, under that replica's pool's OOM policy."""

        def remote(pool: ModelPool) -> T:
            return pool.run(key, loader, work, backend=backend, device=device, dtype=dtype, shrink=shrink)

        return self.call(family_of(key), remote, affinity=affinity)

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
        """A ``with`` block cannot hold a remote model: the model is loaded in this process."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning("model %s is used in a `with` block: it runs in the API process, not on Ray Serve", key)
        with super().use(key, loader, backend=backend, device=device, dtype=dtype) as model:
            yield model

    def device_for(self, family: str) -> str:
        """``IGPT_DEVICES``' device for the family, else ``cuda:0`` when its replicas have GPUs, else ``cpu``."""
        requested = self.settings.device_for(family)
        if requested not in ("auto", "cuda"):
            return requested
        return "cuda:0" if self.settings.ray.deployment_for(family).num_gpus > 0 else "cpu"

    def dtype_for(self, family: str, device: str, gpu_default: DtypeName = "fp16") -> DtypeName:
        """As locally, but without asking this process's CUDA (the replica's GPU decides nothing here)."""
        wanted = self.settings.dtype_for(family)
        if wanted == "auto":
            return gpu_default if device.startswith("cuda") else "fp32"
        return wanted  # type: ignore[return-value]

    # describing -------------------------------------------------------------------------

    def replica_stats(self, family: str | None = None) -> list[ReplicaStats]:
        """The last report of every live replica (of ``family``), oldest first."""
        if not ray.is_initialized():  # disconnected: a call below would start a new local Ray
            return []
        try:
            raw = ray.get(stats_board().read.remote(), timeout=10)
        except Exception:
            log.warning("could not read the replicas' stats", exc_info=True)
            return []
        stats = [ReplicaStats.model_validate(r) for r in raw]
        return sorted(
            (s for s in stats if (family is None or s.family == family) and _alive(s.actor_name)),
            key=lambda s: s.updated,
        )

    def describe(self) -> list[ModelInfo]:
        """The models of every replica (``serving: "ray"``, ``replica``) plus any used in this process."""
        remote = [m for s in self.replica_stats() for m in s.models]
        return remote + super().describe()

    def check(self) -> str:
        """The cluster answers (its stats board replies within 5 s); otherwise
        :class:`ServingUnavailable` naming ``IGPT_RAY__ADDRESS``."""
        try:
            if not ray.is_initialized():  # never let a probe start a new local Ray
                raise RuntimeError("this process is not connected to Ray")
            replicas = len(ray.get(stats_board().read.remote(), timeout=5))
        except Exception as exc:
            raise ServingUnavailable(
                f"the Ray cluster {self.settings.ray.address or '(local)'} does not answer ({type(exc).__name__}); "
                "check that its head runs and IGPT_RAY__ADDRESS points at it"
            ) from None
        return f"Ray Serve: {len(self._handles)} deployments in use, {replicas} replica reports"

    def close(self) -> None:
        """Forget the handles (the deployments stay on the cluster for other API processes)."""
        with self._deploy_lock:
            self._handles.clear()


def _alive(actor_name: str) -> bool:
    """Whether the replica actor ``actor_name`` is alive (a dead one's last report is stale)."""
    try:
        ray.get_actor(actor_name, namespace="serve")
    except ValueError:
        return False
    return True


def _unavailable(family: str, exc: BaseException) -> ModelUnavailable:
    return ModelUnavailable(
        f"the Ray Serve replica of model family {family!r} died or became unreachable while working on this "
        f"request ({type(exc).__name__}); Serve is restarting it: retry the request in a few seconds",
        detail={"family": family, "deployment": app_name(family)},
    )

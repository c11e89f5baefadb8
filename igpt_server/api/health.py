"""Liveness (``/api/health``), readiness (``/api/ready``) and Prometheus metrics (``/metrics``).

``/api/health`` answers whenever the process serves requests, and says whether it wants an
API key (``auth``), so the page knows to ask, and what the start-up warm-up is still loading
(``loading``: part -> state, see :mod:`igpt_server.controller.warmup`). ``/api/ready`` is 200 when the store answers
(shared store: PostgreSQL *and* the object store; ``checks.store`` names the part that does
not answer and what to check), the data directory's disk (shared: the artifact cache's) is
above ``min_free_bytes``, the model pool reports its models and the place the models run
answers (``checks.serving``: always in local mode; with ``IGPT_SERVING=ray``, the Ray
cluster); otherwise a 503 ``not_ready`` whose ``detail`` holds every check. Models load
lazily on first use, so "ready" does not wait for them: ``checks.models`` tells how many are
loaded.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from igpt_server import __version__
from igpt_server.api.deps import ServicesDep
from igpt_server.api.errors import error_response
from igpt_server.api.schemas import ErrorOut, HealthOut, ReadyCheck, ReadyOut
from igpt_server.controller.warmup import loading_status
from igpt_server.errors import IgptError, StoreUnavailable
from igpt_server.services import Services
from igpt_server.store.limits import free_bytes

router = APIRouter(prefix="/api", tags=["health"])
metrics_router = APIRouter(tags=["health"])

MiB = 1024 * 1024


@router.get("/health", response_model=HealthOut)
def health(services: ServicesDep) -> HealthOut:
    """Alive: version, tools, whether API calls need a key, and what is still loading."""
    infos = services.registry.infos()
    return HealthOut(
        status="ok",
        version=__version__,
        tools_available=sum(i.available for i in infos),
        tools_total=len(infos),
        auth=services.settings.auth_mode(),
        loading=loading_status(),
    )


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ErrorOut, "description": "not ready: detail holds every check"}},
)
def ready(services: ServicesDep) -> ReadyOut | JSONResponse:
    """Ready to serve: store reachable, disk above the watermark, model pool sane."""
    checks = {
        "store": _store_check(services),
        "disk": _disk_check(services),
        "models": _models_check(services),
        "serving": _serving_check(services),
    }
    if all(c.ok for c in checks.values()):
        return ReadyOut(ready=True, checks=checks)
    failed = ", ".join(name for name, c in checks.items() if not c.ok)
    return error_response(
        503, "not_ready", f"not ready: {failed}", {name: c.model_dump() for name, c in checks.items()}
    )


@metrics_router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text format (see igpt_server/metrics.py for the series)."""
    registry = services.runner.metrics
    return Response(registry.render(), media_type=registry.content_type)


def _store_check(services: Services) -> ReadyCheck:
    try:
        return ReadyCheck(ok=True, detail=services.store.check())
    except StoreUnavailable as exc:  # the shared store: the message names the part and what to check
        return ReadyCheck(ok=False, detail=exc.message)
    except Exception as exc:  # a locked or broken database: report it, never raise from a probe
        return ReadyCheck(ok=False, detail=f"the session store does not answer ({type(exc).__name__})")


def _disk_check(services: Services) -> ReadyCheck:
    free = free_bytes(services.store.data_dir)
    floor = services.settings.min_free_bytes or 0
    detail = f"{free / MiB:.0f} MiB free, watermark {floor / MiB:.0f} MiB"
    return ReadyCheck(ok=free > floor, detail=detail)


def _models_check(services: Services) -> ReadyCheck:
    models = services.pool.describe()
    loaded = sum(m.loaded for m in models)
    return ReadyCheck(ok=True, detail=f"{loaded} of {len(models)} known models loaded (others load on first use)")


def _serving_check(services: Services) -> ReadyCheck:
    """Where the models run answers: always in local mode; on Ray Serve, the cluster."""
    try:
        return ReadyCheck(ok=True, detail=services.pool.check())
    except IgptError as exc:  # the message names the setting to check
        return ReadyCheck(ok=False, detail=exc.message)

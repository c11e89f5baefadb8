"""Liveness and version."""

from __future__ import annotations

from fastapi import APIRouter

from igpt_server import __version__
from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import HealthOut

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=HealthOut)
def health(services: ServicesDep) -> HealthOut:
    infos = services.registry.infos()
    return HealthOut(
        status="ok",
        version=__version__,
        tools_available=sum(i.available for i in infos),
        tools_total=len(infos),
    )

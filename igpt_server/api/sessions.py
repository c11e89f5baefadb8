"""Sessions: create, read, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import SessionCreated, SessionOut

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


@router.post("", status_code=201, response_model=SessionCreated)
def create_session(services: ServicesDep) -> SessionCreated:
    return SessionCreated(id=services.store.create().id)


@router.get("/{session_id}", response_model=SessionOut)
def get_session(session_id: str, services: ServicesDep) -> SessionOut:
    return SessionOut.of(services.store.get(session_id))


@router.delete("/{session_id}", status_code=204)
def delete_session(session_id: str, services: ServicesDep) -> Response:
    services.store.delete(session_id)
    return Response(status_code=204)

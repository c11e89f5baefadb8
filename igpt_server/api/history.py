"""History, undo and redo of a session: the server's history is the one source of truth.

* ``GET /api/sessions/{id}/history?offset=0&limit=50``: the session's history, oldest first,
  one page: ``{"total", "offset", "limit", "entries": [{"seq", "role", "text", "created_at",
  "record"}], "can_undo", "can_redo"}``. ``record`` is the typed history record (tool step,
  gesture, undo, redo, caption; see :mod:`igpt_server.store.history`) or null for user turns,
  replies and uploads.
* ``POST /api/sessions/{id}/undo`` and ``POST /api/sessions/{id}/redo``: move the undo
  pointer one step (a chat turn, a gesture or a tool call is one step; the chat's "undo"
  moves the same pointer) and return the session (``SessionOut``). Redo after undo restores
  exactly the image and the selection the step had made. With nothing to undo (redo), a 409
  ``nothing_to_undo`` (``nothing_to_redo``) and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query

from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import SessionOut, Strict
from igpt_server.errors import IgptError
from igpt_server.services import Services
from igpt_server.store import SessionStore, history

router = APIRouter(prefix="/api/sessions", tags=["history"])


class NothingToUndo(IgptError):
    status = 409
    code = "nothing_to_undo"


class HistoryEntry(Strict):
    seq: int
    role: str
    text: str
    created_at: float
    record: dict[str, Any] | None


class HistoryPage(Strict):
    total: int
    offset: int
    limit: int
    entries: list[HistoryEntry]
    can_undo: bool
    can_redo: bool


@router.get("/{session_id}/history", response_model=HistoryPage)
def get_history(
    session_id: str,
    services: ServicesDep,
    offset: int = Query(0, ge=0, description="index of the first entry (0 = the oldest)"),
    limit: int = Query(50, ge=1, le=500, description="entries per page"),
) -> HistoryPage:
    """One page of the session's history, oldest first, with where the undo pointer stands."""
    messages = services.store.get(session_id).messages
    page = messages[offset : offset + limit]
    entries = []
    for message in page:
        record = history.parse(message)
        entries.append(
            HistoryEntry(
                seq=message.seq,
                role=message.role,
                text=message.content,
                created_at=message.created_at,
                record=record.model_dump(mode="json") if record is not None else None,
            )
        )
    state = history.undo_state(messages)
    return HistoryPage(
        total=len(messages),
        offset=offset,
        limit=limit,
        entries=entries,
        can_undo=state.can_undo,
        can_redo=state.can_redo,
    )


@router.post("/{session_id}/undo", response_model=SessionOut)
def undo(session_id: str, services: ServicesDep) -> SessionOut:
    """Undo the last step (chat turn, gesture or tool call); returns the session."""
    return _move_pointer(services, session_id, history.undo, "there is nothing to undo in this session", "undo")


@router.post("/{session_id}/redo", response_model=SessionOut)
def redo(session_id: str, services: ServicesDep) -> SessionOut:
    """Redo the last undone step; returns the session."""
    return _move_pointer(services, session_id, history.redo, "there is nothing to redo: undo a step first", "redo")


def _move_pointer(
    services: Services, session_id: str, move: Callable[[SessionStore, str], object | None], nothing: str, verb: str
) -> SessionOut:
    """Move the undo pointer with ``move`` under the session's writer lock; 409 when it cannot."""
    store = services.store
    store.require(session_id)
    with store.writer(session_id):
        if move(store, session_id) is None:
            raise NothingToUndo(nothing, code=f"nothing_to_{verb}")
    return SessionOut.of(store.get(session_id))

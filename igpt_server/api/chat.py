"""Chat: one turn of words plus optional pointing, as JSON or as server-sent events.

``POST /api/sessions/{id}/chat`` with ``{"message": str, "gesture": optional Gesture}``
returns ``{"reply", "artifacts", "steps": [{"tool", "args", "observation", "recovered"}]}``;
``recovered`` names the arguments the auxiliary control filled in or corrected.

``POST /api/sessions/{id}/chat/stream`` runs the same turn as ``text/event-stream``:
``step`` (one tool step), ``token`` (``{"text"}``: a piece of the LLM's text as it streams),
``reply`` (the body of the plain route), ``error`` (the error shape) and ``done``. Bad input
(empty or huge message, unknown session, a gesture outside the image) is refused before
the stream starts, with the usual 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import ArtifactOut, Strict
from igpt_server.controller import ChatStep, ChatTurn
from igpt_server.perception.gestures import Gesture

router = APIRouter(prefix="/api/sessions", tags=["chat"])


class ChatIn(Strict):
    """One chat turn: what the user says, and where they pointed (image pixels of the
    active image), if they did."""

    message: str = Field(description="what to do, e.g. 'remove it' or 'what is written here'")
    gesture: Gesture | None = Field(None, description="a click, box, stroke or drag sent with the message")


class ChatOut(Strict):
    reply: str
    artifacts: list[ArtifactOut]
    steps: list[ChatStep]

    @classmethod
    def of(cls, session_id: str, turn: ChatTurn) -> ChatOut:
        return cls(
            reply=turn.reply,
            artifacts=[ArtifactOut.of(session_id, a) for a in turn.artifacts],
            steps=turn.steps,
        )


@router.post("/{session_id}/chat", response_model=ChatOut)
def chat(session_id: str, body: ChatIn, services: ServicesDep) -> ChatOut:
    """Run one turn: the LLM and the auxiliary control pick and run the tools."""
    turn = services.controller.chat(session_id, body.message, body.gesture)
    return ChatOut.of(session_id, turn)


@router.post("/{session_id}/chat/stream", response_class=StreamingResponse)
def chat_stream(session_id: str, body: ChatIn, services: ServicesDep) -> StreamingResponse:
    """The same turn as server-sent events: step, token, reply, error, done."""
    events = services.controller.chat_events(session_id, body.message, body.gesture)
    return StreamingResponse(
        _sse(session_id, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(session_id: str, events: Iterator[tuple[str, dict[str, Any]]]) -> Iterator[str]:
    for event, data in events:
        if event == "reply":
            data = ChatOut.of(session_id, ChatTurn.model_validate(data)).model_dump(mode="json")
        yield f"event: {event}\ndata: {json.dumps(data)}\n\n"

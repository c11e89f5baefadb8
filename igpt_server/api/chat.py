"""Chat: one turn of words plus optional pointing, as JSON or as server-sent events.

``POST /api/sessions/{id}/chat`` with ``{"message": str, "gesture": optional Gesture}``
returns ``{"reply", "artifacts", "steps": [{"tool", "args", "observation", "recovered",
"chosen_by"}]}``; ``recovered`` names the arguments the auxiliary control filled in or
corrected, ``chosen_by`` who picked the tool (``llm``, ``rules``, ``llm+rules``). The reply
names images by their number in the session ("image #3"), never by path.

``POST /api/sessions/{id}/chat/stream`` runs the same turn as ``text/event-stream``:
``progress`` (JSON of :class:`~igpt_server.tooling.progress.Progress`: queued, loading,
running), ``step`` (one tool step), ``token`` (``{"text"}``: a piece of the LLM's text as it
streams), ``reply`` (the body of the plain route), ``error`` (the error shape) and ``done``.
Bad input (empty or huge message, unknown session, a gesture outside the image) is refused
before the stream starts, with the usual 4xx.

The turn runs on its own thread (with the request's context) and hands its events to the
stream through a queue. When the client goes away (the page's Stop button closes the
stream), a cancel event is set; the turn checks it between steps and ends with a
``cancelled`` error, leaving every step already finished recorded and nothing half-done.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import queue
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from igpt_server.api.deps import ServicesDep
from igpt_server.api.errors import error_body, scrubbed
from igpt_server.api.schemas import ArtifactOut, Strict
from igpt_server.controller import ChatStep, ChatTurn, Controller
from igpt_server.perception.gestures import Gesture
from igpt_server.tooling.progress import Progress, tracking

router = APIRouter(prefix="/api/sessions", tags=["chat"])

#: how often the stream looks for new events and for a client that went away (seconds)
POLL_S = 0.05


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
async def chat_stream(session_id: str, body: ChatIn, request: Request, services: ServicesDep) -> StreamingResponse:
    """The same turn as server-sent events: progress, step, token, reply, error, done."""
    controller = services.controller
    await run_in_threadpool(controller.check, session_id, body.message, body.gesture)
    cancel = threading.Event()
    events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
    worker = threading.Thread(
        target=contextvars.copy_context().run,
        args=(_turn, controller, session_id, body, events, cancel),
        name=f"chat-{session_id[:8]}",
        daemon=True,
    )
    worker.start()
    return StreamingResponse(
        _sse(session_id, events, cancel, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _turn(
    controller: Controller,
    session_id: str,
    body: ChatIn,
    events: queue.Queue[tuple[str, dict[str, Any]] | None],
    cancel: threading.Event,
) -> None:
    """Run the turn inside progress tracking; every event goes to ``events``, then None."""

    def sink(progress: Progress) -> None:
        events.put(("progress", progress.model_dump(mode="json", exclude_none=True)))

    try:
        with tracking(sink, cancel):
            for event in controller.chat_events(session_id, body.message, body.gesture):
                events.put(event)
    except Exception as exc:  # the check failed after the stream started (the session was deleted)
        events.put(("error", error_body(exc)))
        events.put(("done", {}))
    finally:
        events.put(None)


async def _sse(
    session_id: str,
    events: queue.Queue[tuple[str, dict[str, Any]] | None],
    cancel: threading.Event,
    request: Request,
) -> AsyncIterator[str]:
    finished = False
    try:
        while True:
            try:
                item = events.get_nowait()
            except queue.Empty:
                if await request.is_disconnected():
                    break
                await asyncio.sleep(POLL_S)
                continue
            if item is None:
                finished = True
                break
            event, data = item
            if event == "reply":
                data = ChatOut.of(session_id, ChatTurn.model_validate(data)).model_dump(mode="json")
            elif event == "error":
                data = scrubbed(data)
            yield f"event: {event}\ndata: {json.dumps(data)}\n\n"
    finally:
        if not finished:
            cancel.set()  # the client went away: stop the turn between its steps

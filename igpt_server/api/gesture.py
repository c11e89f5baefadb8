"""The perception unit over HTTP: ``POST /api/sessions/{id}/gesture``.

The route parses the request and answers; what a gesture does (select, ocr, move, sketch),
which tools it calls and how it is recorded in the history is the perception service's job
(:mod:`igpt_server.perception.service`, shared with the controller).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import ArtifactOut, Strict
from igpt_server.perception.gestures import Gesture
from igpt_server.perception.service import Intent

router = APIRouter(prefix="/api/sessions", tags=["gesture"])


class GestureIn(Strict):
    gesture: Gesture = Field(description="click, box, stroke or drag, in image pixels (see the Gesture schemas)")
    intent: Intent = Field(description="select, ocr, move (needs a drag) or sketch (needs a stroke)")
    image: str | None = Field(None, description="the image pointed at; default: the active image")
    add: bool = Field(False, description="select: unite with the selection; sketch: draw on the latest sketch")


class GestureOut(Strict):
    intent: Intent
    text: str
    artifacts: list[ArtifactOut]
    data: dict[str, Any]


@router.post("/{session_id}/gesture", response_model=GestureOut)
def point(session_id: str, body: GestureIn, services: ServicesDep) -> GestureOut:
    """Select, read, move or sketch with one gesture on an image of the session."""
    done = services.perception.point(session_id, body.gesture, body.intent, image=body.image, add=body.add)
    return GestureOut(
        intent=done.intent,
        text=done.text,
        artifacts=[ArtifactOut.of(session_id, a) for a in done.artifacts],
        data=done.data,
    )

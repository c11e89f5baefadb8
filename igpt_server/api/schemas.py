"""Request and response bodies of the HTTP API (pydantic; unknown fields are rejected)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from igpt_server.store import Artifact, Message, SessionState
from igpt_server.tooling.runner import ToolCallResult


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthOut(Strict):
    status: str
    version: str
    tools_available: int
    tools_total: int
    auth: Literal["none", "keys"] = Field(
        description="keys: every API call needs 'Authorization: Bearer <key>' (or the igpt_key cookie)"
    )
    loading: dict[str, str] = Field(
        default_factory=dict,
        description="the start-up warm-up, part -> state: waiting, loading, ready, not needed, not available or "
        "'failed: <reason>' (a failed part loads on first use); empty when the warm-up is off or has not started",
    )


class ReadyCheck(Strict):
    ok: bool
    detail: str


class ReadyOut(Strict):
    """Readiness: the store answers, the disk is above its watermark, the model pool is sane."""

    ready: bool
    checks: dict[str, ReadyCheck]


class ErrorBody(Strict):
    code: str = Field(description="stable snake_case name, e.g. not_found, auth_required, busy")
    message: str = Field(description="what went wrong and how to fix it")
    detail: Any = Field(None, description="more data: validation errors, the request id of a 500, ...")


class ErrorOut(Strict):
    """The one error shape of every 4xx and 5xx answer."""

    error: ErrorBody


class ArtifactOut(Artifact):
    """An artifact with the ``url`` to download its bytes."""

    url: str

    @classmethod
    def of(cls, session_id: str, artifact: Artifact) -> ArtifactOut:
        url = f"/api/sessions/{session_id}/files/{quote(artifact.path)}"
        return cls(**artifact.model_dump(), url=url)


class SessionOut(Strict):
    id: str
    created_at: float
    active_image: str | None
    active_mask: str | None
    materials: list[str]
    artifacts: list[ArtifactOut]
    messages: list[Message]

    @classmethod
    def of(cls, state: SessionState) -> SessionOut:
        data = state.model_dump(exclude={"artifacts"})
        return cls(**data, artifacts=[ArtifactOut.of(state.id, a) for a in state.artifacts])


class SessionCreated(Strict):
    id: str


class ToolCallIn(Strict):
    session: str = Field(description="the session the tool works in")
    args: dict[str, Any] = Field(default_factory=dict, description="the tool's arguments (see /api/tools)")


class ToolCallOut(Strict):
    tool: str
    backend: str
    text: str
    artifacts: list[ArtifactOut]
    data: dict[str, Any]

    @classmethod
    def of(cls, session_id: str, result: ToolCallResult) -> ToolCallOut:
        return cls(
            tool=result.tool,
            backend=result.backend,
            text=result.text,
            artifacts=[ArtifactOut.of(session_id, a) for a in result.artifacts],
            data=result.data,
        )

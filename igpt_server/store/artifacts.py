"""Records of the store: artifacts, messages, session state (pydantic, JSON-ready).

An artifact path is relative to its session and has the form ``<kind>/<8 hex>_<stem>.<ext>``,
e.g. ``image/3f9a0c1d_truck.jpg`` or ``mask/77aa01bc_mask.png``. It is the only name a
client or the LLM ever uses for a file; it is looked up in the session's registry and never
joined to a file-system path unchecked.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ArtifactKind(StrEnum):
    image = "image"  # RGB picture (upload or tool output)
    mask = "mask"  # single-channel PNG, 0 or 255, same size as its parent image
    sketch = "sketch"  # strokes on a blank canvas of the parent's size (PNG)
    material = "material"  # RGBA cut-out kept for composing (PNG)
    audio = "audio"
    video = "video"


ARTIFACT_PATH_PATTERN = r"^(image|mask|sketch|material|audio|video)/[0-9a-f]{8}_[A-Za-z0-9_-]{1,64}\.[a-z0-9]{2,5}$"
_ARTIFACT_PATH_RE = re.compile(ARTIFACT_PATH_PATTERN)


def is_artifact_path(text: str) -> bool:
    """True when ``text`` has the shape of an artifact path (it may still not exist)."""
    return bool(_ARTIFACT_PATH_RE.match(text))


class Artifact(BaseModel):
    """One file of a session. ``width``/``height`` in pixels for pictures, else null."""

    model_config = ConfigDict(extra="forbid")

    path: str
    kind: ArtifactKind
    parent: str | None = None
    tool: str | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int = 0
    created_at: float
    meta: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One entry of a session's history.

    ``role`` is ``user``, ``assistant``, ``tool`` (a tool step: ``data`` holds tool, args,
    observation, recovered) or ``event`` (a gesture or upload, so the controller can refer
    back to it: "the mask_path is mask/...").
    """

    model_config = ConfigDict(extra="forbid")

    seq: int
    role: str
    content: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: float


class SessionState(BaseModel):
    """A session as the API shows it; the active ones are artifact paths or null."""

    model_config = ConfigDict(extra="forbid")

    id: str
    created_at: float
    active_image: str | None
    active_mask: str | None
    materials: list[str]
    artifacts: list[Artifact]
    messages: list[Message]

    def artifact(self, path: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.path == path), None)

"""The scene: one session's facts as the controller sees them during a turn.

A :class:`Scene` wraps a :class:`~igpt_server.store.SessionState` with the look-ups the
correction rules need (artifacts by kind, lineage, sizes, the masks earlier steps used) and
renders the facts for the prompt as one structured context block (never as fake turns):
the active image, the active selection, materials, the newest artifacts, the latest OCR
results and the gesture sent with the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from string import Template
from typing import Any

from igpt_prompts import load_prompt
from igpt_server.store import Artifact, ArtifactKind, Message, SessionState

#: an artifact path anywhere in a text (see ``ARTIFACT_PATH_PATTERN``)
_PATH_RE = re.compile(r"\b(image|mask|sketch|material|audio|video)/[0-9a-f]{8}_[A-Za-z0-9_-]{1,64}\.[a-z0-9]{2,5}\b")
_NOUNS = {
    ArtifactKind.image: "image",
    ArtifactKind.mask: "mask",
    ArtifactKind.sketch: "sketch",
    ArtifactKind.material: "cut-out",
    ArtifactKind.audio: "recording",
    ArtifactKind.video: "video",
}
#: how many artifacts and OCR results the context block lists (newest last)
CONTEXT_ARTIFACTS = 12
CONTEXT_OCR = 3


@dataclass
class Scene:
    state: SessionState

    # ---- look-ups -----------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.state.id

    def artifact(self, path: Any) -> Artifact | None:
        """The artifact at ``path`` (any value; non-strings are never artifacts)."""
        return self.state.artifact(path) if isinstance(path, str) else None

    def is_kind(self, path: Any, kinds: tuple[ArtifactKind, ...]) -> bool:
        """True when ``path`` is an artifact of this session of one of ``kinds``."""
        artifact = self.artifact(path)
        return artifact is not None and (not kinds or artifact.kind in kinds)

    def of_kind(self, *kinds: ArtifactKind) -> list[Artifact]:
        """Artifacts of these kinds, oldest first."""
        return [a for a in self.state.artifacts if a.kind in kinds]

    @property
    def active_image(self) -> Artifact | None:
        return self.artifact(self.state.active_image)

    @property
    def active_mask(self) -> Artifact | None:
        return self.artifact(self.state.active_mask)

    def lineage(self, path: str | None) -> list[str]:
        """``path``, its parent, grandparent... (stops at a missing or repeated parent)."""
        chain: list[str] = []
        current = self.artifact(path)
        while current is not None and current.path not in chain:
            chain.append(current.path)
            current = self.artifact(current.parent)
        return chain

    def root(self, path: str | None) -> str | None:
        """The first ancestor of ``path`` (an upload, usually)."""
        chain = self.lineage(path)
        return chain[-1] if chain else None

    def same_size(self, a: str | None, b: str | None) -> bool:
        first, second = self.artifact(a), self.artifact(b)
        return (
            first is not None
            and second is not None
            and (first.width, first.height) == (second.width, second.height)
            and first.width is not None
        )

    def image_fits_mask(self, image: str | None, mask: str | None) -> bool:
        """True when ``image`` is the mask's parent or an edit of it of the same size.

        (After "remove it", the mask of the other object still fits the edited image.)
        """
        parent = self.artifact(mask).parent if self.artifact(mask) is not None else None  # type: ignore[union-attr]
        if image is None or parent is None:
            return False
        return parent in self.lineage(image) and self.same_size(image, mask)

    # ---- history ------------------------------------------------------------------------

    def tool_messages(self) -> list[Message]:
        return [m for m in self.state.messages if m.role == "tool"]

    def masks_used(self) -> list[str]:
        """Masks earlier tool steps took as arguments, least recently used first."""
        used: list[str] = []
        for message in self.tool_messages():
            for value in (message.data.get("args") or {}).values():
                if isinstance(value, str) and self.is_kind(value, (ArtifactKind.mask,)):
                    if value in used:
                        used.remove(value)
                    used.append(value)
        return used

    def last_used_mask(self) -> str | None:
        used = self.masks_used()
        return used[-1] if used else None

    def other_mask(self) -> str | None:
        """ "The other one": the newest mask that fits the active image and is neither the
        active selection nor used by an earlier step; else the newest one that is not the
        last used or active one."""
        image = self.state.active_image
        candidates = [
            m.path
            for m in reversed(self.of_kind(ArtifactKind.mask))
            if image is None or self.image_fits_mask(image, m.path)
        ]
        busy = {self.state.active_mask, self.last_used_mask()}
        used = set(self.masks_used())
        fresh = [m for m in candidates if m not in busy and m not in used]
        if fresh:
            return fresh[0]
        rest = [m for m in candidates if m not in busy]
        return rest[0] if rest else None

    def latest(self, kind: ArtifactKind, fits_image: str | None = None) -> str | None:
        """The newest artifact of ``kind`` (preferring one made for ``fits_image``'s lineage)."""
        items = list(reversed(self.of_kind(kind)))
        if fits_image is not None:
            lineage = set(self.lineage(fits_image))
            for artifact in items:
                if artifact.parent in lineage:
                    return artifact.path
        return items[0].path if items else None

    def ocr_results(self) -> list[str]:
        """Observations of the latest OCR steps, newest last."""
        texts = [m.content for m in self.tool_messages() if (m.data.get("tool") == "ocr")]
        return texts[-CONTEXT_OCR:]

    def events(self, limit: int = 4) -> list[str]:
        return [m.content for m in self.state.messages if m.role == "event"][-limit:]

    # ---- names for people ----------------------------------------------------------------

    def name_of(self, path: str | None) -> str:
        """How a reply names an artifact: "image #3" (its number in the session's strip of
        images, counted from 1 in upload/creation order), "the selection" (the active mask),
        "mask #2", "cut-out #1", "sketch #1", "recording #1"."""
        artifact = self.artifact(path)
        if artifact is None:
            return "no image"
        if artifact.kind is ArtifactKind.mask and artifact.path == self.state.active_mask:
            return "the selection"
        same = [a.path for a in self.state.artifacts if a.kind is artifact.kind]
        noun = _NOUNS.get(artifact.kind, artifact.kind.value)
        return f"{noun} #{same.index(artifact.path) + 1}"

    def humane(self, text: str) -> str:
        """``text`` with every artifact path of this session replaced by :meth:`name_of`, and
        any other path-like artifact name by its kind ("an image")."""

        def name(match: re.Match[str]) -> str:
            path = match.group(0)
            if self.artifact(path) is not None:
                return self.name_of(path)
            noun = _NOUNS.get(ArtifactKind(match.group(1)), match.group(1))
            return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"

        return _PATH_RE.sub(name, text)

    # ---- the context block --------------------------------------------------------------

    def describe(self, artifact: Artifact | None) -> str:
        if artifact is None:
            return "none"
        size = f" {artifact.width}x{artifact.height}" if artifact.width else ""
        origin = f" made by {artifact.tool}" if artifact.tool else " uploaded"
        parent = f" from {artifact.parent}" if artifact.parent else ""
        return f"{artifact.path} ({artifact.kind.value}{size}{origin}{parent})"

    def context_block(self, gesture: Any = None) -> str:
        """The scene facts as text for the prompt (``prompts/scene.md``)."""
        artifacts = self.state.artifacts[-CONTEXT_ARTIFACTS:]
        listing = "\n".join(f"- {self.describe(a)}" for a in artifacts) or "- none (ask the user to upload an image)"
        ocr = "\n".join(f"- {text}" for text in self.ocr_results()) or "- none yet"
        materials = ", ".join(self.state.materials) or "none"
        pointing = "none"
        if gesture is not None:
            pointing = json.dumps(gesture.model_dump(mode="json"), separators=(",", ":"))
        return Template(load_prompt("scene")).substitute(
            active_image=self.describe(self.active_image),
            active_selection=self.describe(self.active_mask),
            materials=materials,
            artifacts=listing,
            ocr=ocr,
            gesture=pointing,
        )

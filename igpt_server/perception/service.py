"""The perception service: one gesture on an image of a session, turned into tool calls.

A person points at an image and says by the button they press what the pointing is for
(the *intent*):

* ``select`` (click, box or stroke): the ``segment`` tool; the mask becomes the selection,
  ``add=True`` unites it with the selection of the same image;
* ``ocr`` (click, box or stroke): the ``ocr`` tool on the words the gesture touches;
* ``move`` (drag): the object under the drag's start - the selection if it lies there (within
  ``GRAB_PIXELS`` or ``GRAB_SHARE`` of the image's longer side), otherwise what ``segment``
  finds at that point - moves by the drag's vector (``move`` tool); the moved object's mask
  becomes the selection of the new image;
* ``sketch`` (stroke): the ``sketch`` tool; ``add=True`` draws on the latest sketch of the image.

The image defaults to the session's active image. Every tool call goes through the runner
(validation, artifact checks, nothing stored on failure) and is recorded in the history
with the paths it made ("mask_path is mask/..."), so the controller can refer to it later
(:func:`record_gesture_step`, the one place that writes a gesture step).

Both the HTTP route (``POST /api/sessions/{id}/gesture``) and the controller call
:meth:`PerceptionService.point`; neither knows how a gesture becomes tool calls. Errors are
the server's own types (:class:`~igpt_server.errors.InvalidInput` for a wrong gesture, an
image-less session or a gesture outside the image; whatever the runner raises otherwise).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from igpt_server import media
from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.perception.gestures import Box, Click, ClickPoint, Drag, Gesture, Stroke, check_inside
from igpt_server.store import Artifact, ArtifactKind, SessionStore, history
from igpt_server.tooling.runner import ToolCallResult, ToolRunner

Intent = Literal["select", "ocr", "move", "sketch"]
#: a drag starting this close (pixels, or this share of the image's longer side) to the
#: selection moves the selection
GRAB_PIXELS, GRAB_SHARE = 6.0, 0.01
_ARG_NAMES = {
    ArtifactKind.image: "image_path",
    ArtifactKind.mask: "mask_path",
    ArtifactKind.sketch: "sketch_path",
    ArtifactKind.material: "material_path",
}


@dataclass
class PointResult:
    """What one gesture did: the last tool's text and data, and every artifact made, in order
    (for ``move`` without a selection: the found mask, then the moved image and its mask)."""

    intent: Intent
    text: str
    artifacts: list[Artifact]
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Request:
    session_id: str
    image: Artifact
    gesture: Gesture
    intent: Intent
    add: bool
    #: the undo step of this gesture: every tool call it makes (a move's segment, then move)
    group: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


class PerceptionService:
    """Turns gestures into tool calls through the runner; records every step in the history."""

    def __init__(self, store: SessionStore, runner: ToolRunner) -> None:
        self.store = store
        self.runner = runner

    def point(
        self, session_id: str, gesture: Gesture, intent: Intent, *, image: str | None = None, add: bool = False
    ) -> PointResult:
        """Select, read, move or sketch with one gesture (image pixels) on an image of the session.

        ``image`` is an image artifact path (default: the active image); ``add`` unites a
        selection with the current one, or draws a sketch on the image's latest sketch.
        """
        artifact = self._image(session_id, image)
        check_inside(gesture, artifact.width or 0, artifact.height or 0)
        request = _Request(session_id, artifact, gesture, intent, add)
        if intent == "select":
            result, made = self._select(request)
        elif intent == "ocr":
            result, made = self._ocr(request)
        elif intent == "move":
            result, made = self._move(request)
        else:
            result, made = self._sketch(request)
        return PointResult(intent=intent, text=result.text, artifacts=made, data=result.data)

    # intents ----------------------------------------------------------------------------

    def _select(self, req: _Request) -> tuple[ToolCallResult, list[Artifact]]:
        _needs(req, (Click, Box, Stroke), "a click, a box or a stroke (a drag moves the selection)")
        args = {"image_path": req.image.path, "gesture": req.gesture.model_dump(), "add": req.add}
        result = self._call(req, "segment", args)
        return result, result.artifacts

    def _ocr(self, req: _Request) -> tuple[ToolCallResult, list[Artifact]]:
        _needs(req, (Click, Box, Stroke), "a click, a box or a stroke over the text")
        result = self._call(req, "ocr", {"image_path": req.image.path, "region": req.gesture.model_dump()})
        return result, result.artifacts

    def _sketch(self, req: _Request) -> tuple[ToolCallResult, list[Artifact]]:
        _needs(req, (Stroke,), "a stroke")
        args: dict[str, Any] = {"image_path": req.image.path, "strokes": [req.gesture.model_dump()]}
        if req.add:
            latest = self._latest_sketch(req.session_id, req.image.path)
            if latest is not None:
                args["base_sketch_path"] = latest
        result = self._call(req, "sketch", args)
        return result, result.artifacts

    def _move(self, req: _Request) -> tuple[ToolCallResult, list[Artifact]]:
        _needs(req, (Drag,), "a drag from the object to its new place")
        drag = req.gesture
        assert isinstance(drag, Drag)
        made: list[Artifact] = []
        mask_path = self._selection_under(req.session_id, req.image, drag)
        if mask_path is None:
            found = self._segment_at(req, drag)
            made += found.artifacts
            mask_path = found.artifacts[0].path
        dx, dy = drag.vector()
        result = self._call(req, "move", {"image_path": req.image.path, "mask_path": mask_path, "dx": dx, "dy": dy})
        return result, made + result.artifacts

    def _segment_at(self, req: _Request, drag: Drag) -> ToolCallResult:
        """``segment`` at the drag's start; a clear ``nothing_to_move`` when it finds nothing."""
        start = Click(points=[ClickPoint(x=drag.start[0], y=drag.start[1], label=1)])
        try:
            return self._call(req, "segment", {"image_path": req.image.path, "gesture": start.model_dump()})
        except InvalidInput as exc:
            raise InvalidInput(
                f"nothing is selected under the drag's start ({drag.start[0]:g}, {drag.start[1]:g}) and no "
                f"object was found there ({exc.message}); select the object first, then drag it",
                code="nothing_to_move",
            ) from exc

    # session look-ups -------------------------------------------------------------------

    def _image(self, session_id: str, path: str | None) -> Artifact:
        if path is None:
            path = self.store.get(session_id).active_image
            if path is None:
                raise InvalidInput("this session has no image yet; upload one first", code="no_image")
        return self.store.artifact(session_id, path, (ArtifactKind.image,))

    def _latest_sketch(self, session_id: str, image_path: str) -> str | None:
        sketches = [a for a in self.store.get(session_id).artifacts if a.kind is ArtifactKind.sketch]
        return next((a.path for a in reversed(sketches) if a.parent == image_path), None)

    def _selection_under(self, session_id: str, image: Artifact, drag: Drag) -> str | None:
        """The active selection when it is a mask of ``image`` and the drag starts on it."""
        active = self.store.get(session_id).active_mask
        if active is None or self.store.artifact(session_id, active).parent != image.path:
            return None
        mask = media.read_mask(self.store.artifact_file(session_id, active))
        reach = max(GRAB_PIXELS, GRAB_SHARE * max(mask.shape))
        return active if geometry.distance_to_mask(mask, *drag.start) <= reach else None

    def _call(self, req: _Request, tool: str, args: dict[str, Any]) -> ToolCallResult:
        """Run ``tool`` through the runner and record the step with the paths it made and the
        image and selection before it (what undo restores)."""
        before = history.snapshot(self.store, req.session_id)
        result = self.runner.call(req.session_id, tool, args, record=False)
        record_gesture_step(
            self.store, req.session_id, tool, args, req.gesture, req.intent, result, before=before, group=req.group
        )
        return result


def _needs(req: _Request, kinds: tuple[type, ...], what: str) -> None:
    if not isinstance(req.gesture, kinds):
        raise InvalidInput(f"intent {req.intent!r} needs {what}, not a {req.gesture.type}", code="wrong_gesture")


def record_gesture_step(
    store: SessionStore,
    session_id: str,
    tool: str,
    args: dict[str, Any],
    gesture: Gesture,
    intent: Intent,
    result: ToolCallResult,
    *,
    before: history.Snapshot,
    group: str,
) -> None:
    """Append one gesture's tool step to the history through the store's one writer: a
    :class:`~igpt_server.store.history.GestureStep` whose observation names the paths made
    ("... (select gesture: click; mask_path is mask/...)"), with ``tool``, ``args``,
    ``artifacts`` (paths), ``gesture``, ``intent``, the state ``before`` it (undo restores it)
    and the ``group`` shared by the tool calls of one gesture (one undo step)."""
    paths = "; ".join(f"{_ARG_NAMES.get(a.kind, a.kind.value)} is {a.path}" for a in result.artifacts)
    content = f"{result.text} ({intent} gesture: {gesture.type}{'; ' + paths if paths else ''})"
    step = history.GestureStep(
        tool=tool,
        intent=intent,
        gesture=gesture.model_dump(),
        args=args,
        observation=content,
        artifacts=[a.path for a in result.artifacts],
        before=before,
        group=group,
    )
    store.record(session_id, step)

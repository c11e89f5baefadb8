"""The perception unit over HTTP: ``POST /api/sessions/{id}/gesture``.

A person points at an image and says by the button they press what the pointing is for:

* ``select`` (click, box or stroke): the ``segment`` tool; the mask becomes the selection,
  ``add: true`` unites it with the selection of the same image;
* ``ocr`` (click, box or stroke): the ``ocr`` tool on the words the gesture touches;
* ``move`` (drag): the object under the drag's start - the selection if it lies there,
  otherwise what ``segment`` finds at that point - moves by the drag's vector (``move``
  tool); the moved object's mask becomes the selection of the new image;
* ``sketch`` (stroke): the ``sketch`` tool; ``add: true`` draws on the latest sketch of the image.

``image`` defaults to the active image. Every tool call goes through the runner (validation,
artifact checks, nothing stored on failure) and is recorded in the history with the paths it
made ("mask_path is mask/..."), so the controller can refer to it later.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import Field

from igpt_server import media
from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import ArtifactOut, Strict
from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.perception.gestures import Box, Click, ClickPoint, Drag, Gesture, Stroke, check_inside
from igpt_server.services import Services
from igpt_server.store import Artifact, ArtifactKind
from igpt_server.tooling.runner import ToolCallResult

router = APIRouter(prefix="/api/sessions", tags=["gesture"])

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
    image = _image(services, session_id, body.image)
    check_inside(body.gesture, image.width or 0, image.height or 0)
    if body.intent == "select":
        result, made = _select(services, session_id, image, body)
    elif body.intent == "ocr":
        result, made = _ocr(services, session_id, image, body)
    elif body.intent == "move":
        result, made = _move(services, session_id, image, body)
    else:
        result, made = _sketch(services, session_id, image, body)
    return GestureOut(
        intent=body.intent,
        text=result.text,
        artifacts=[ArtifactOut.of(session_id, a) for a in made],
        data=result.data,
    )


def _image(services: Services, session_id: str, path: str | None) -> Artifact:
    if path is None:
        path = services.store.get(session_id).active_image
        if path is None:
            raise InvalidInput("this session has no image yet; upload one first", code="no_image")
    return services.store.artifact(session_id, path, (ArtifactKind.image,))


def _needs(body: GestureIn, kinds: tuple[type, ...], what: str) -> None:
    if not isinstance(body.gesture, kinds):
        raise InvalidInput(
            f"intent {body.intent!r} needs {what}, not a {body.gesture.type}",
            code="wrong_gesture",
        )


def _select(services: Services, sid: str, image: Artifact, body: GestureIn) -> tuple[ToolCallResult, list[Artifact]]:
    _needs(body, (Click, Box, Stroke), "a click, a box or a stroke (a drag moves the selection)")
    args = {"image_path": image.path, "gesture": body.gesture.model_dump(), "add": body.add}
    result = _call(services, sid, "segment", args, body)
    return result, result.artifacts


def _ocr(services: Services, sid: str, image: Artifact, body: GestureIn) -> tuple[ToolCallResult, list[Artifact]]:
    _needs(body, (Click, Box, Stroke), "a click, a box or a stroke over the text")
    result = _call(services, sid, "ocr", {"image_path": image.path, "region": body.gesture.model_dump()}, body)
    return result, result.artifacts


def _sketch(services: Services, sid: str, image: Artifact, body: GestureIn) -> tuple[ToolCallResult, list[Artifact]]:
    _needs(body, (Stroke,), "a stroke")
    args: dict[str, Any] = {"image_path": image.path, "strokes": [body.gesture.model_dump()]}
    if body.add:
        sketches = [a for a in services.store.get(sid).artifacts if a.kind is ArtifactKind.sketch]
        latest = next((a for a in reversed(sketches) if a.parent == image.path), None)
        if latest is not None:
            args["base_sketch_path"] = latest.path
    result = _call(services, sid, "sketch", args, body)
    return result, result.artifacts


def _move(services: Services, sid: str, image: Artifact, body: GestureIn) -> tuple[ToolCallResult, list[Artifact]]:
    _needs(body, (Drag,), "a drag from the object to its new place")
    drag = body.gesture
    assert isinstance(drag, Drag)
    made: list[Artifact] = []
    mask_path = _selection_under(services, sid, image, drag)
    if mask_path is None:
        start = Click(points=[ClickPoint(x=drag.start[0], y=drag.start[1], label=1)])
        try:
            found = _call(services, sid, "segment", {"image_path": image.path, "gesture": start.model_dump()}, body)
        except InvalidInput as exc:
            raise InvalidInput(
                f"nothing is selected under the drag's start ({drag.start[0]:g}, {drag.start[1]:g}) and no "
                f"object was found there ({exc.message}); select the object first, then drag it",
                code="nothing_to_move",
            ) from exc
        made += found.artifacts
        mask_path = found.artifacts[0].path
    dx, dy = drag.vector()
    args = {"image_path": image.path, "mask_path": mask_path, "dx": dx, "dy": dy}
    result = services.runner.call(sid, "move", args, record=False)
    made += result.artifacts
    _record(services, sid, "move", args, body, result.text, result.artifacts)
    return result, made


def _selection_under(services: Services, sid: str, image: Artifact, drag: Drag) -> str | None:
    """The active selection when it is a mask of ``image`` and the drag starts on it."""
    active = services.store.get(sid).active_mask
    if active is None or services.store.artifact(sid, active).parent != image.path:
        return None
    mask = media.read_mask(services.store.artifact_file(sid, active))
    reach = max(GRAB_PIXELS, GRAB_SHARE * max(mask.shape))
    return active if geometry.distance_to_mask(mask, *drag.start) <= reach else None


def _call(services: Services, sid: str, tool: str, args: dict[str, Any], body: GestureIn) -> ToolCallResult:
    """Run ``tool`` through the runner and record the step with the paths it made."""
    result = services.runner.call(sid, tool, args, record=False)
    _record(services, sid, tool, args, body, result.text, result.artifacts)
    return result


def _record(
    services: Services, sid: str, tool: str, args: dict[str, Any], body: GestureIn, text: str, made: list[Artifact]
) -> None:
    paths = "; ".join(f"{_ARG_NAMES.get(a.kind, a.kind.value)} is {a.path}" for a in made)
    content = f"{text} ({body.intent} gesture: {body.gesture.type}{'; ' + paths if paths else ''})"
    data = {
        "tool": tool,
        "args": args,
        "artifacts": [a.path for a in made],
        "gesture": body.gesture.model_dump(),
        "intent": body.intent,
    }
    services.store.append_message(sid, "tool", content, data)

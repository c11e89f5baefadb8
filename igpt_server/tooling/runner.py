"""Calling a tool: validate arguments, check artifact references, run, persist the results.

This is the one way every caller (the REST route, the gesture endpoint, the controller)
runs a tool, so the rules hold everywhere: arguments are validated by the tool's args
model; every artifact argument must be an artifact of this session of the right kind; the
session changes only when the tool succeeded.

Serving many callers:

* one writer per session: the whole call holds the session's writer lock
  (:meth:`SessionStore.writer`; re-entrant, so a chat turn or a gesture that already holds it
  goes on);
* admission control: the run takes a slot of the tool's :class:`~igpt_server.admission.Gate`
  (503 ``busy`` with ``Retry-After`` past its queue; ``queued`` progress while waiting), then
  reports ``running``; a cancelled request leaves before it runs;
* a result is *applied* (becomes the active image or selection) only if the session's active
  image is still the image the tool ran on (its image argument, else the active image when it
  started). Otherwise its artifacts are kept, nothing active changes, ``data.applied`` is
  false and the text says the image changed. A selection is applied only onto its own image;
* outputs keep their input's family: an image made from a JPEG (or WebP) input is stored as
  a JPEG (WebP) of quality ``settings.jpeg_quality``; from PNG or anything else, PNG; masks,
  sketches and materials are always PNG;
* a tool's unexpected exception is logged under the request id and answered as a 500
  ``tool_failed`` that names the tool, the backend and the request id, never the exception.
"""

from __future__ import annotations

import logging
import time
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from igpt_server import logs
from igpt_server.admission import Admission
from igpt_server.errors import IgptError, InvalidInput, ToolFailed
from igpt_server.media import encode_like, encode_png
from igpt_server.metrics import Metrics
from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.store import Artifact, ArtifactKind, SessionStore
from igpt_server.store.history import ToolStep, snapshot
from igpt_server.tooling.context import StoreToolContext
from igpt_server.tooling.interface import ArtifactRef, Backend, NewArtifact, Tool, ToolArgs, ToolOutput
from igpt_server.tooling.progress import Cancelled, check_cancelled, report
from igpt_server.tooling.registry import ToolRegistry

log = logging.getLogger(__name__)


class ToolCallResult(BaseModel):
    """The JSON answer of a tool call."""

    tool: str
    backend: str
    text: str
    artifacts: list[Artifact]
    data: dict[str, Any]


def artifact_fields(args_model: type[BaseModel]) -> dict[str, ArtifactRef]:
    """The fields of ``args_model`` that reference artifacts, with the kinds they accept.

    Lists of references (``list[MaterialPath]``) are included.
    """
    found: dict[str, ArtifactRef] = {}
    for name, info in args_model.model_fields.items():
        ref = next((m for m in info.metadata if isinstance(m, ArtifactRef)), None)
        if ref is None:
            ref = _ref_inside(info.annotation)
        if ref is not None:
            found[name] = ref
    return found


def _ref_inside(annotation: Any) -> ArtifactRef | None:
    for arg in typing.get_args(annotation):
        if isinstance(arg, ArtifactRef):
            return arg
        inner = _ref_inside(arg)
        if inner is not None:
            return inner
    return None


class ToolRunner:
    def __init__(
        self,
        registry: ToolRegistry,
        store: SessionStore,
        settings: Settings,
        pool: ModelPool,
        *,
        admission: Admission | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self.pool = pool
        self.admission = admission or Admission(settings.admission)
        self.metrics = metrics or Metrics()

    def validate(self, session_id: str, name: str, raw_args: dict[str, Any]) -> ToolArgs:
        """Parse ``raw_args`` with the tool's args model and check every artifact reference."""
        tool = self.registry.get(name)
        try:
            args = tool.args_model.model_validate(raw_args)
        except ValidationError as exc:
            raise InvalidInput(
                f"invalid arguments for tool {name!r}: {_first_error(exc)}",
                detail=exc.errors(include_url=False, include_context=False, include_input=False),
            ) from None
        for field_name, ref in artifact_fields(tool.args_model).items():
            value = getattr(args, field_name)
            for path in value if isinstance(value, list) else [value]:
                if path is not None:
                    self.store.artifact(session_id, path, ref.kinds)
        return args

    def call(self, session_id: str, name: str, raw_args: dict[str, Any], *, record: bool = True) -> ToolCallResult:
        """Run tool ``name`` in a session; persists its artifacts when it succeeds."""
        self.store.require(session_id)
        backend = self.registry.backend_for(name)
        with self.store.writer(session_id):
            args = self.validate(session_id, name, raw_args)
            tool = self.registry.get(name)
            ran_on = self._image_of(session_id, tool, args)
            before = snapshot(self.store, session_id)  # what undoing this call restores
            ctx = StoreToolContext(session_id, self.store, self.settings, self.pool)
            with self.admission.gate(name).admit():
                check_cancelled()
                report("running", f"running {name} ({backend.name})", tool=name)
                output = self._run(tool, args, ctx, backend)
            artifacts, changed_to = self._persist(session_id, name, output, ran_on)
        text, data = output.text, output.data
        if changed_to is not _SAME:
            paths = ", ".join(a.path for a in artifacts)
            text += (
                f" (the active image changed to {changed_to} while {name} worked on {ran_on}: its result {paths} "
                "was kept but not made active; PUT /api/sessions/{id}/active to use it)"
            )
            data = {**data, "applied": False}
        result = ToolCallResult(tool=name, backend=backend.name, text=text, artifacts=artifacts, data=data)
        if record:  # through the one history writer (store.record)
            step = ToolStep(
                tool=name,
                args=args.model_dump(mode="json"),
                observation=output.text,
                artifacts=[a.path for a in artifacts],
                source="rest",
                before=before,
            )
            self.store.record(session_id, step)
        return result

    def _run(self, tool: Tool, args: ToolArgs, ctx: StoreToolContext, backend: Backend) -> ToolOutput:
        started, outcome = time.monotonic(), "ok"
        try:
            return tool.run(args, ctx, backend)
        except Cancelled:
            outcome = "cancelled"
            raise
        except IgptError:
            outcome = "error"
            raise
        except Exception as exc:  # a tool's own bug or a library failure: report, never crash
            outcome = "error"
            rid = logs.request_id.get() or "-"
            log.exception("tool %s (%s) failed", tool.name, backend.name)
            raise ToolFailed(
                f"tool {tool.name!r} ({backend.name}) failed; the server log has the details under request id {rid}",
                detail={"request_id": rid, "tool": tool.name, "backend": backend.name},
            ) from exc
        finally:
            self.metrics.tools.labels(tool.name, backend.name, outcome).observe(time.monotonic() - started)

    def _image_of(self, session_id: str, tool: Tool, args: ToolArgs) -> str | None:
        """The image a call works on: its image argument, else the session's active image."""
        for field_name, ref in artifact_fields(tool.args_model).items():
            value = getattr(args, field_name)
            if ref.kinds == (ArtifactKind.image,) and isinstance(value, str):
                return value
        return self.store.get(session_id).active_image

    def _persist(
        self, session_id: str, tool: str, output: ToolOutput, ran_on: str | None
    ) -> tuple[list[Artifact], str | None]:
        """Store the artifacts, then apply their roles if the image is still ``ran_on``.

        Returns the artifacts and ``_SAME``, or the active image that replaced ``ran_on``.
        """
        stored: list[Artifact] = []
        for new in output.artifacts:
            stored.append(self._store_one(session_id, tool, new, _resolve_parent(new.parent, stored)))
        active = self.store.get(session_id).active_image
        if ran_on is not None and active != ran_on and any(n.role in ("image", "selection") for n in output.artifacts):
            return stored, active
        for new, artifact in zip(output.artifacts, stored, strict=True):
            if new.role == "image":
                self.store.update_state(session_id, active_image=artifact.path, active_mask=None)
                active = artifact.path
            elif new.role == "selection" and (artifact.parent == active or active is None):
                self.store.update_state(session_id, active_image=artifact.parent or active, active_mask=artifact.path)
            elif new.role == "material":
                self.store.update_state(session_id, add_material=artifact.path)
        return stored, _SAME

    def _store_one(self, session_id: str, tool: str, new: NewArtifact, parent: str | None) -> Artifact:
        width = height = None
        if isinstance(new.content, bytes):
            content = new.content
            ext = new.ext
        elif new.kind is ArtifactKind.image and parent is not None:
            family = self.store.artifact(session_id, parent).path.rsplit(".", 1)[-1]
            content, ext = encode_like(new.content, family, self.settings.jpeg_quality)
            height, width = new.content.shape[:2]
        else:
            content = encode_png(new.content)
            ext = "png"
            height, width = new.content.shape[:2]
        return self.store.add_artifact(
            session_id,
            new.kind,
            content,
            ext=ext,
            stem=new.stem,
            parent=parent,
            tool=tool,
            width=width,
            height=height,
            meta=new.meta,
        )


_SAME: Any = object()


def _resolve_parent(parent: str | None, stored: list[Artifact]) -> str | None:
    """``"@N"`` names the N-th artifact of the same output (stored before this one)."""
    if parent is None or not parent.startswith("@"):
        return parent
    index = int(parent[1:])
    if not 0 <= index < len(stored):
        raise ValueError(f"parent {parent!r} must name an earlier artifact of the same tool output")
    return stored[index].path


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "args"
    return f"{where}: {err['msg']}"

"""Calling a tool: validate arguments, check artifact references, run, persist the results.

This is the one way every caller (the REST route, the gesture endpoint, the controller)
runs a tool, so the rules hold everywhere: arguments are validated by the tool's args
model; every artifact argument must be an artifact of this session of the right kind; the
session changes only when the tool succeeded.
"""

from __future__ import annotations

import logging
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from igpt_server.errors import IgptError, InvalidInput, ToolFailed
from igpt_server.media import encode_png
from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.store import Artifact, SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_server.tooling.interface import ArtifactRef, NewArtifact, ToolArgs, ToolOutput
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
    def __init__(self, registry: ToolRegistry, store: SessionStore, settings: Settings, pool: ModelPool) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self.pool = pool

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
        args = self.validate(session_id, name, raw_args)
        tool = self.registry.get(name)
        ctx = StoreToolContext(session_id, self.store, self.settings, self.pool)
        try:
            output = tool.run(args, ctx, backend)
        except IgptError:
            raise
        except Exception as exc:  # a tool's own bug or a library failure: report, never crash
            log.exception("tool %s failed", name)
            raise ToolFailed(f"tool {name!r} ({backend.name}) failed: {type(exc).__name__}: {exc}") from exc
        artifacts = self._persist(session_id, name, output)
        result = ToolCallResult(
            tool=name, backend=backend.name, text=output.text, artifacts=artifacts, data=output.data
        )
        if record:
            self.store.append_message(
                session_id,
                "tool",
                output.text,
                {
                    "tool": name,
                    "args": args.model_dump(mode="json"),
                    "artifacts": [a.path for a in artifacts],
                },
            )
        return result

    def _persist(self, session_id: str, tool: str, output: ToolOutput) -> list[Artifact]:
        stored: list[Artifact] = []
        for new in output.artifacts:
            stored.append(self._store_one(session_id, tool, new, _resolve_parent(new.parent, stored)))
        for new, artifact in zip(output.artifacts, stored, strict=True):
            if new.role == "image":
                self.store.update_state(session_id, active_image=artifact.path, active_mask=None)
            elif new.role == "selection":
                self.store.update_state(session_id, active_mask=artifact.path)
            elif new.role == "material":
                self.store.update_state(session_id, add_material=artifact.path)
        return stored

    def _store_one(self, session_id: str, tool: str, new: NewArtifact, parent: str | None) -> Artifact:
        width = height = None
        if isinstance(new.content, bytes):
            content = new.content
            ext = new.ext
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

"""The tool registry: which tools exist, which backend each one uses, and why not.

The backend of a tool is chosen once, at start-up: the first of its ordered backends
(best first) whose packages and weights are present, or the one named in
``settings.backends[tool]``. ``/api/tools`` shows the choice, or the reason a tool is
unavailable and what to install or configure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from igpt_server.errors import NotFound, ToolUnavailable
from igpt_server.models.pool import ModelInfo
from igpt_server.settings import Settings
from igpt_server.tooling.interface import Backend, Tool


class BackendInfo(BaseModel):
    name: str
    available: bool
    reason: str | None


class ToolInfo(BaseModel):
    """A tool as ``GET /api/tools`` describes it."""

    name: str
    description: str
    args_schema: dict[str, Any]
    gestures: list[str]
    backend: str | None
    available: bool
    reason: str | None
    backends: list[BackendInfo]
    models: list[ModelInfo] = []


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool], settings: Settings) -> None:
        self.settings = settings
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool
        unknown = set(settings.backends) - set(self._tools)
        if unknown:
            raise ValueError(f"IGPT_BACKENDS names unknown tools {sorted(unknown)}; known: {sorted(self._tools)}")
        self._chosen: dict[str, Backend | None] = {}
        self._infos: dict[str, ToolInfo] = {}
        for tool in self._tools.values():
            self._infos[tool.name] = self._choose(tool)

    def _choose(self, tool: Tool) -> ToolInfo:
        reasons = [(b, b.unavailable_reason(self.settings)) for b in tool.backends]
        wanted = self.settings.backends.get(tool.name)
        if wanted is not None and wanted not in {b.name for b in tool.backends}:
            names = ", ".join(b.name for b in tool.backends)
            raise ValueError(f"IGPT_BACKENDS: tool {tool.name!r} has no backend {wanted!r}; it has {names}")
        candidates = [(b, r) for b, r in reasons if wanted is None or b.name == wanted]
        chosen = next((b for b, r in candidates if r is None), None)
        self._chosen[tool.name] = chosen
        reason = None
        if chosen is None:
            reason = "; ".join(f"{r}" for _, r in candidates) or "no backend"
        return ToolInfo(
            name=tool.name,
            description=tool.description,
            args_schema=tool.args_model.model_json_schema(),
            gestures=list(tool.gestures),
            backend=chosen.name if chosen else None,
            available=chosen is not None,
            reason=reason,
            backends=[BackendInfo(name=b.name, available=r is None, reason=r) for b, r in reasons],
        )

    def names(self) -> list[str]:
        return list(self._tools)

    def available_names(self) -> list[str]:
        return [name for name, info in self._infos.items() if info.available]

    def infos(self) -> list[ToolInfo]:
        return list(self._infos.values())

    def info(self, name: str) -> ToolInfo:
        self.get(name)
        return self._infos[name]

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise NotFound(f"no tool {name!r}; the tools are {', '.join(sorted(self._tools))}") from None

    def model_families(self, name: str) -> tuple[str, ...]:
        """The model-pool families of the chosen backend of ``name`` (empty when unavailable)."""
        backend = self._chosen[self.get(name).name]
        return backend.model_families if backend is not None else ()

    def upload_hooks(self) -> list[tuple[Tool, Backend]]:
        """The available tools that work on every uploaded image in the background (those that
        override :meth:`Tool.on_image_upload`), each with its chosen backend."""
        return [
            (tool, backend)
            for tool in self._tools.values()
            if (backend := self._chosen[tool.name]) is not None
            and type(tool).on_image_upload is not Tool.on_image_upload
        ]

    def backend_for(self, name: str) -> Backend:
        """The chosen backend, or :class:`ToolUnavailable` saying what to configure."""
        tool = self.get(name)
        backend = self._chosen[tool.name]
        if backend is None:
            raise ToolUnavailable(
                f"tool {name!r} is unavailable on this server: {self._infos[name].reason}",
                detail={"tool": name, "backends": [b.model_dump() for b in self._infos[name].backends]},
            )
        return backend

"""The tool list, direct tool calls (no LLM) and the model pool."""

from __future__ import annotations

from fastapi import APIRouter

from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import ToolCallIn, ToolCallOut
from igpt_server.models.pool import ModelInfo
from igpt_server.tooling.registry import ToolInfo

router = APIRouter(prefix="/api", tags=["tools"])


@router.get("/tools", response_model=list[ToolInfo])
def list_tools(services: ServicesDep) -> list[ToolInfo]:
    """Every tool with its backend (or why it is unavailable) and its models' pool state."""
    registry, pool = services.registry, services.pool
    return [
        info.model_copy(update={"models": pool.describe_families(registry.model_families(info.name))})
        for info in registry.infos()
    ]


@router.post("/tools/{name}", response_model=ToolCallOut)
def call_tool(name: str, body: ToolCallIn, services: ServicesDep) -> ToolCallOut:
    """Run one tool with explicit arguments; its artifacts join the session."""
    result = services.runner.call(body.session, name, body.args)
    return ToolCallOut.of(body.session, result)


@router.get("/models", response_model=list[ModelInfo])
def list_models(services: ServicesDep) -> list[ModelInfo]:
    return services.pool.describe()

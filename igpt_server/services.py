"""The long-lived objects of one server process, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.store import SessionStore
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import ToolRunner


@dataclass
class Services:
    settings: Settings
    store: SessionStore
    pool: ModelPool
    registry: ToolRegistry
    runner: ToolRunner

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from igpt_tools import builtin_tools

        store = SessionStore(settings.data_dir)
        pool = ModelPool()
        registry = ToolRegistry(builtin_tools(settings), settings)
        runner = ToolRunner(registry, store, settings, pool)
        return cls(settings=settings, store=store, pool=pool, registry=registry, runner=runner)

    def close(self) -> None:
        self.store.close()

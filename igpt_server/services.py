"""The long-lived objects of one server process, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from igpt_server.controller import Controller
from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.speech import SpeechRecognizer
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
    controller: Controller
    speech: SpeechRecognizer

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from igpt_tools import builtin_tools

        store = SessionStore(settings.data_dir)
        pool = ModelPool(settings)
        registry = ToolRegistry(builtin_tools(settings), settings)
        runner = ToolRunner(registry, store, settings, pool)
        controller = Controller.build(settings, store, registry, runner, pool)
        speech = SpeechRecognizer(settings, pool)
        return cls(
            settings=settings,
            store=store,
            pool=pool,
            registry=registry,
            runner=runner,
            controller=controller,
            speech=speech,
        )

    def after_image_upload(self, session_id: str, image_path: str) -> None:
        """Start the background caption of a new image (when a caption backend is available)."""
        from igpt_tools.vqa import caption_in_background

        caption_in_background(self, session_id, image_path)

    def close(self) -> None:
        self.store.close()

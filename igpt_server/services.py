"""The long-lived objects of one server process, built once by the app factory.

:class:`Services` also owns the process's background work: one executor
(:data:`BACKGROUND_WORKERS` threads) for jobs that must not hold up a request - the work every
available tool does on a newly uploaded image (:meth:`Tool.on_image_upload`: the background
caption, precomputed segmentation maps), warming models up at start-up, and whatever else a
part of the server hands to :meth:`Services.submit_background`. :meth:`Services.close`
cancels the jobs that have not started, waits for the running ones, then closes the store,
so no job writes to a closed store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from igpt_server.controller import Controller
from igpt_server.errors import IgptError, NotFound
from igpt_server.models.pool import ModelPool
from igpt_server.models.serving import build_pool
from igpt_server.perception.service import PerceptionService
from igpt_server.settings import Settings
from igpt_server.speech import SpeechRecognizer
from igpt_server.store import SessionStore, history
from igpt_server.store.factory import open_store
from igpt_server.tooling.context import StoreToolContext
from igpt_server.tooling.interface import Backend, Tool, UploadNote
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import ToolRunner

log = logging.getLogger(__name__)

#: threads of the background executor (captions, precomputation, warm-up)
BACKGROUND_WORKERS = 2
T = TypeVar("T")


class BackgroundClosed(RuntimeError):
    """A job was submitted after :meth:`Services.close`."""


@dataclass
class BackgroundWork:
    """A named-job executor: failures are logged (never raised into a request), jobs that
    have not started are cancelled on :meth:`shutdown`, running ones are waited for."""

    workers: int = BACKGROUND_WORKERS
    _executor: ThreadPoolExecutor = field(init=False)
    _pending: dict[Future[Any], str] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _closed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="igpt-background")

    def submit(self, name: str, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn()`` on a background thread; the future holds its result or exception."""
        with self._lock:
            if self._closed:
                raise BackgroundClosed(f"the server is shutting down; background job {name!r} was not started")
            future = self._executor.submit(_logged, name, fn)
            self._pending[future] = name
        future.add_done_callback(self._forget)
        return future

    def running(self) -> list[str]:
        """Names of the jobs submitted and not finished yet (queued or running)."""
        with self._lock:
            return sorted(self._pending.values())

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.pop(future, None)


def _logged(name: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except NotFound:
        log.info("background job %s: its session or artifact is gone", name)
        raise
    except IgptError as exc:
        log.warning("background job %s failed: %s", name, exc.message)
        raise
    except Exception:
        log.exception("background job %s failed", name)
        raise


@dataclass
class Services:
    settings: Settings
    store: SessionStore
    pool: ModelPool
    registry: ToolRegistry
    runner: ToolRunner
    controller: Controller
    speech: SpeechRecognizer
    perception: PerceptionService
    background: BackgroundWork = field(default_factory=BackgroundWork)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from igpt_tools import builtin_tools

        store = open_store(settings)
        pool = build_pool(settings)
        registry = ToolRegistry(builtin_tools(settings), settings)
        runner = ToolRunner(registry, store, settings, pool)
        perception = PerceptionService(store, runner)
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
            perception=perception,
        )

    def submit_background(self, name: str, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn()`` on the server's background executor, off the request thread.

        ``name`` appears in logs (``"caption image/3f9a_dog.png"``, ``"warm-up"``). The future
        holds ``fn``'s result, or its exception (which is also logged). Raises
        :class:`BackgroundClosed` after :meth:`close`.
        """
        return self.background.submit(name, fn)

    def after_image_upload(self, session_id: str, image_path: str) -> dict[str, Future[None]]:
        """Start the background work of every available tool on a new image (its
        :meth:`~igpt_server.tooling.interface.Tool.on_image_upload`: the caption, precomputed
        maps); returns the futures by tool name. A note a tool returns is stored by
        :func:`record_note` (a caption as a typed ``CaptionNote``); a failure is logged and
        leaves the session unchanged."""
        return {
            tool.name: self.submit_background(
                f"{tool.name} on upload {image_path}", partial(self._upload_job, tool, backend, session_id, image_path)
            )
            for tool, backend in self.registry.upload_hooks()
        }

    def _upload_job(self, tool: Tool, backend: Backend, session_id: str, image_path: str) -> None:
        ctx = StoreToolContext(session_id, self.store, self.settings, self.pool)
        note = tool.on_image_upload(image_path, ctx, backend)
        if note is not None:
            record_note(self.store, session_id, note)

    def close(self) -> None:
        """Cancel queued background jobs, wait for running ones, close the store."""
        self.background.shutdown()
        self.store.close()


def record_note(store: SessionStore, session_id: str, note: UploadNote) -> None:
    """Append an upload hook's note to the history: a caption (``data["event"] == "caption"``)
    as a typed :class:`~igpt_server.store.history.CaptionNote` through the store's one writer
    (``record``); any other note as a plain ``event`` message."""
    if note.data.get("event") == "caption":
        store.record(session_id, history.CaptionNote.model_validate(note.data))
    else:
        record_event(store, session_id, note.text, note.data)


def record_event(store: SessionStore, session_id: str, text: str, data: dict[str, Any]) -> None:
    """Append an ``event`` message (a fact the server learnt in the background) to the history."""
    store.append_message(session_id, "event", text, data)

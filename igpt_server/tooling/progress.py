"""Progress and cancellation of the work a request started (one turn, one tool call).

The caller that owns a request (the chat stream, a tool route) opens a :func:`tracking`
block with a sink and a cancel event; everything below it (the runner, the model pool, a
tool's loop) reports through :func:`report` and checks :func:`check_cancelled`, without
being handed either. They travel in a :class:`contextvars.ContextVar`, so they follow the
request's thread and are absent (no-ops) everywhere else, e.g. in tests that call a tool
directly.

Stages, in the order a user meets them:

* ``queued``: waiting for a model or tool slot (``position`` is 1 for the next in line);
* ``loading``: a model is being loaded (``model`` names it);
* ``running``: a tool is working (``tool``; ``percent`` 0..100 where the tool knows it:
  diffusion steps, fill iterations).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from igpt_server.errors import IgptError

Stage = Literal["queued", "loading", "running"]


class Progress(BaseModel):
    """One progress event, sent to the page as an SSE ``progress`` event."""

    stage: Stage
    message: str
    tool: str | None = None
    model: str | None = None
    position: int | None = None
    percent: float | None = None


ProgressSink = Callable[[Progress], None]


class Cancelled(IgptError):
    """The client stopped the request (closed the stream or pressed Stop)."""

    status = 499
    code = "cancelled"


@dataclass
class _Tracking:
    sink: ProgressSink | None
    cancel: threading.Event | None


_current: ContextVar[_Tracking | None] = ContextVar("igpt_progress", default=None)


@contextmanager
def tracking(sink: ProgressSink | None = None, cancel: threading.Event | None = None) -> Iterator[None]:
    """Route :func:`report` to ``sink`` and :func:`check_cancelled` to ``cancel`` inside the block."""
    token = _current.set(_Tracking(sink, cancel))
    try:
        yield
    finally:
        _current.reset(token)


def report(stage: Stage, message: str, **fields: object) -> None:
    """Send one progress event to the current request's sink, if it has one."""
    current = _current.get()
    if current is not None and current.sink is not None:
        current.sink(Progress(stage=stage, message=message, **fields))  # type: ignore[arg-type]


def cancelled() -> bool:
    """Whether the current request was cancelled by its client."""
    current = _current.get()
    return current is not None and current.cancel is not None and current.cancel.is_set()


def check_cancelled() -> None:
    """Raise :class:`Cancelled` when the current request's client has gone away.

    Call it between units of work that can be dropped safely (before loading a model,
    between diffusion steps or fill iterations); never after the session was changed.
    """
    if cancelled():
        raise Cancelled("the request was cancelled by the client; nothing was changed")

"""Admission control: each tool has a bounded queue in front of a fixed number of slots.

A call of a tool takes one of its ``concurrency`` slots, or waits in a first-come queue of at
most ``queue`` calls. Past that the call is refused at once with :class:`Busy` (503) and a
``Retry-After`` estimated from the tool's recent run times, instead of waiting a minute while
holding memory. While it waits, the call reports ``queued`` progress with its position (1 is
next) through :mod:`igpt_server.tooling.progress`, and a client that went away
(:func:`~igpt_server.tooling.progress.check_cancelled`) leaves the queue.

Limits come from ``settings.admission`` (defaults for every tool, overrides per tool).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from igpt_server.errors import Busy
from igpt_server.settings import AdmissionSettings
from igpt_server.tooling.progress import check_cancelled, report

#: how often a waiting call re-checks for cancellation (seconds)
_POLL_S = 0.25
#: weight of the newest run time in the running mean
_EMA = 0.3


class Gate:
    """The slots and the queue of one tool. Thread-safe."""

    def __init__(self, name: str, concurrency: int, queue: int) -> None:
        self.name = name
        self.concurrency = concurrency
        self.queue_limit = queue
        self._cond = threading.Condition()
        self._running = 0
        self._waiting: deque[object] = deque()
        self._mean_s: float | None = None
        self.rejected = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def retry_after(self) -> float:
        """Seconds until a slot is likely free for a new caller."""
        mean = self._mean_s if self._mean_s is not None else 5.0
        return max(1.0, math.ceil(mean * (len(self._waiting) + 1) / self.concurrency))

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot inside the block; wait in the queue, or raise :class:`Busy` when it is full."""
        self._enter()
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            with self._cond:
                self._running -= 1
                self._mean_s = elapsed if self._mean_s is None else (1 - _EMA) * self._mean_s + _EMA * elapsed
                self._cond.notify_all()

    def _enter(self) -> None:
        with self._cond:
            if self._running < self.concurrency and not self._waiting:
                self._running += 1
                return
            if len(self._waiting) >= self.queue_limit:
                self.rejected += 1
                retry = self.retry_after()
                raise Busy(
                    f"tool {self.name!r} is busy ({self._running} running, {len(self._waiting)} waiting); "
                    f"retry in about {retry:.0f} s",
                    retry_after=retry,
                    detail={"tool": self.name, "running": self._running, "waiting": len(self._waiting)},
                )
            ticket = object()
            self._waiting.append(ticket)
            reported = 0
            try:
                while not (self._waiting[0] is ticket and self._running < self.concurrency):
                    position = self._waiting.index(ticket) + 1
                    if position != reported:
                        report(
                            "queued", f"waiting for {self.name} ({position} in line)", tool=self.name, position=position
                        )
                        reported = position
                    self._cond.wait(_POLL_S)
                    check_cancelled()
            except BaseException:
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._running += 1
            self._cond.notify_all()  # the others moved up one place


class Admission:
    """Every tool's :class:`Gate`, made on first use from the settings."""

    def __init__(self, settings: AdmissionSettings) -> None:
        self.settings = settings
        self._gates: dict[str, Gate] = {}
        self._lock = threading.Lock()

    def gate(self, tool: str) -> Gate:
        with self._lock:
            gate = self._gates.get(tool)
            if gate is None:
                limits = self.settings.for_tool(tool)
                gate = self._gates[tool] = Gate(tool, limits.concurrency, limits.queue)
            return gate

    def gates(self) -> list[Gate]:
        with self._lock:
            return list(self._gates.values())

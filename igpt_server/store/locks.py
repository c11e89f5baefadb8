"""One writer per session: a per-session lock that works across threads of one process.

Every state-changing call on a session (tool calls, gestures, chat turns, ``PUT /active``,
uploads, delete) holds the session's writer lock for its whole run, so two of them never
interleave their reads and writes of the active image and selection.

Ownership is by *writer identity*, not by thread: a request sets its identity (its request
id, :func:`writer_identity`) once, and every thread that works for it (FastAPI's thread pool,
the streaming iterator) re-enters the lock it already holds. Code outside a request (a
background thread, a test) is identified by its thread.

The interface is :class:`SessionLocks` (``acquire`` / ``release`` of a :class:`Lease`), so a
multi-process deployment can replace :class:`LocalSessionLocks` with PostgreSQL advisory locks
(``pg_advisory_lock(hashtextextended(session_id, 0))`` on the request's connection: they are
re-entrant per connection and released with it) without touching the callers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

_identity: ContextVar[str | None] = ContextVar("igpt_writer_identity", default=None)


@contextmanager
def writer_identity(token: str) -> Iterator[None]:
    """Everything inside the block (and threads started with its context) is one writer."""
    reset = _identity.set(token)
    try:
        yield
    finally:
        _identity.reset(reset)


def current_writer() -> str:
    """The writer identity of the running code: its request, or else its thread."""
    return _identity.get() or f"thread-{threading.get_ident()}"


@dataclass(frozen=True)
class Lease:
    """A held lock: release it with the same :class:`SessionLocks`."""

    session_id: str
    owner: str


class SessionLocks(Protocol):
    def acquire(self, session_id: str, timeout: float | None, owner: str | None = None) -> Lease | None:
        """Take the session's lock (re-entrant per writer; default: :func:`current_writer`);
        ``None`` when ``timeout`` seconds passed first."""
        ...

    def release(self, lease: Lease) -> None: ...

    def busy(self, session_id: str) -> bool:
        """Whether a writer other than the current one holds the session now."""
        ...


class LocalSessionLocks:
    """:class:`SessionLocks` for one process: a condition variable over ``{session: (owner, depth)}``.

    Entries exist only while held, so the table stays as small as the number of busy sessions.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders: dict[str, tuple[str, int]] = {}

    def acquire(self, session_id: str, timeout: float | None, owner: str | None = None) -> Lease | None:
        me = owner or current_writer()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                holder = self._holders.get(session_id)
                if holder is None or holder[0] == me:
                    self._holders[session_id] = (me, 1 if holder is None else holder[1] + 1)
                    return Lease(session_id, me)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def release(self, lease: Lease) -> None:
        with self._cond:
            holder = self._holders.get(lease.session_id)
            if holder is None or holder[0] != lease.owner:
                raise RuntimeError(f"session {lease.session_id} is not held by {lease.owner}")
            if holder[1] > 1:
                self._holders[lease.session_id] = (holder[0], holder[1] - 1)
            else:
                del self._holders[lease.session_id]
                self._cond.notify_all()

    def busy(self, session_id: str) -> bool:
        with self._cond:
            holder = self._holders.get(session_id)
        return holder is not None and holder[0] != current_writer()

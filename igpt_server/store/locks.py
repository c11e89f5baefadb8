"""One writer per session: a per-session lock that works across threads of one process.

Every state-changing call on a session (tool calls, gestures, chat turns, ``PUT /active``,
uploads, delete) holds the session's writer lock for its whole run, so two of them never
interleave their reads and writes of the active image and selection.

Ownership is by *writer identity*, not by thread: a request sets its identity (its request
id, :func:`writer_identity`) once, and every thread that works for it (FastAPI's thread pool,
the streaming iterator) re-enters the lock it already holds. Code outside a request (a
background thread, a test) is identified by its thread.

The interface is :class:`SessionLocks` (``acquire`` / ``release`` of a :class:`Lease`):
:class:`LocalSessionLocks` for one process (the local store), :class:`PostgresSessionLocks`
(``pg_advisory_lock(hashtextextended(session_id, 0))`` held on a connection of the lease)
for replicas sharing one PostgreSQL; the callers do not know which.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from igpt_server.errors import StoreUnavailable

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


def _database_down(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(
        f"the session database does not answer ({type(exc).__name__}) while taking a session's writer lock; "
        "check that PostgreSQL is up and IGPT_STORE__DATABASE_URL is right, then retry",
        part="database",
    )


_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtextextended(:sid, 0))"


class PostgresSessionLocks:
    """:class:`SessionLocks` across processes: PostgreSQL session-level advisory locks.

    A lease is ``pg_advisory_lock(hashtextextended(session_id, 0))`` taken on a connection of
    its own (from ``engine``'s pool), held for the lease's life and unlocked on release, so
    it survives no crash: a dead process's connection closes and PostgreSQL frees its locks.
    Re-entry by the same writer identity in this process only counts depth (no second
    connection). A wait is bounded by ``SET lock_timeout`` (``timeout=0``:
    ``pg_try_advisory_lock``); past it :meth:`acquire` returns ``None`` and the store answers
    409 ``session_busy``. A database that cannot be reached raises
    :class:`~igpt_server.errors.StoreUnavailable` (503).

    Hash collisions of two session ids (64-bit) would only serialise two unrelated sessions.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._mutex = threading.Lock()
        self._held: dict[tuple[str, str], tuple[Any, int]] = {}

    def acquire(self, session_id: str, timeout: float | None, owner: str | None = None) -> Lease | None:
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError, OperationalError
        from sqlalchemy.exc import TimeoutError as PoolTimeout

        me = owner or current_writer()
        with self._mutex:
            held = self._held.get((session_id, me))
            if held is not None:
                self._held[(session_id, me)] = (held[0], held[1] + 1)
                return Lease(session_id, me)
        try:
            connection = self._engine.connect()
        except PoolTimeout:  # every lock connection of this replica is taken: as busy as it gets
            return None
        except (OperationalError, DBAPIError) as exc:
            raise _database_down(exc) from None
        try:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            if timeout is not None and timeout <= 0:
                got = connection.execute(
                    text("SELECT pg_try_advisory_lock(hashtextextended(:sid, 0))"), {"sid": session_id}
                ).scalar()
            else:
                wait_ms = 0 if timeout is None else max(1, int(timeout * 1000))
                connection.execute(text(f"SET lock_timeout = {wait_ms}"))
                try:
                    connection.execute(text("SELECT pg_advisory_lock(hashtextextended(:sid, 0))"), {"sid": session_id})
                    got = True
                except OperationalError as exc:
                    if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                        raise
                    got = False
                connection.execute(text("SET lock_timeout = 0"))
        except (OperationalError, DBAPIError) as exc:
            connection.invalidate()
            connection.close()
            raise _database_down(exc) from None
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return None
        with self._mutex:
            self._held[(session_id, me)] = (connection, 1)
        return Lease(session_id, me)

    def release(self, lease: Lease) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        _UNLOCK = text(_UNLOCK_SQL)
        with self._mutex:
            held = self._held.get((lease.session_id, lease.owner))
            if held is None:
                raise RuntimeError(f"session {lease.session_id} is not held by {lease.owner}")
            if held[1] > 1:
                self._held[(lease.session_id, lease.owner)] = (held[0], held[1] - 1)
                return
            del self._held[(lease.session_id, lease.owner)]
        connection = held[0]
        try:
            unlocked = connection.execute(_UNLOCK, {"sid": lease.session_id}).scalar()
        except DBAPIError:  # the connection is gone, and its locks with it
            unlocked = False
        if not unlocked:  # never hand a connection that may still hold the lock back to the pool
            connection.invalidate()
        connection.close()

    def busy(self, session_id: str) -> bool:
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        _UNLOCK = text(_UNLOCK_SQL)
        me = current_writer()
        with self._mutex:
            if (session_id, me) in self._held:
                return False
            if any(sid == session_id for sid, _ in self._held):
                return True
        try:
            with self._engine.connect() as connection:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                free = connection.execute(
                    text("SELECT pg_try_advisory_lock(hashtextextended(:sid, 0))"), {"sid": session_id}
                ).scalar()
                if free:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(hashtextextended(:sid, 0))"), {"sid": session_id}
                    )
        except DBAPIError as exc:
            raise _database_down(exc) from None
        return not free

    def close(self) -> None:
        """Release every lease still held and close the lock connections (at shutdown)."""
        with self._mutex:
            held, self._held = list(self._held.values()), {}
        for connection, _ in held:
            connection.invalidate()  # closes it for real: PostgreSQL frees its locks
            connection.close()
        self._engine.dispose()

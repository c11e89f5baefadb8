"""The writer lock as a PostgreSQL advisory lock: re-entrant, bounded waits, seen across connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from igpt_server.store import db as dbmod
from igpt_server.store.locks import PostgresSessionLocks
from tests.shared_store import PostgresServer

SID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def engines(postgres_server: PostgresServer) -> Iterator[tuple[Engine, Engine]]:
    """Two engines of one database: two replicas, as PostgreSQL sees them."""
    name = postgres_server.create_database()
    first, second = dbmod.postgres_engine(postgres_server.url(name)), dbmod.postgres_engine(postgres_server.url(name))
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()
        postgres_server.drop_database(name)


def test_the_lock_is_reentrant_for_one_writer_and_freed_at_the_last_release(engines: tuple[Engine, Engine]) -> None:
    mine, theirs = PostgresSessionLocks(engines[0]), PostgresSessionLocks(engines[1])
    outer = mine.acquire(SID, 1.0, owner="request-1")
    inner = mine.acquire(SID, 1.0, owner="request-1")
    assert outer is not None and inner is not None
    assert theirs.busy(SID)
    mine.release(inner)
    assert theirs.busy(SID), "still held once"
    assert theirs.acquire(SID, 0, owner="request-2") is None
    mine.release(outer)
    assert not theirs.busy(SID)
    lease = theirs.acquire(SID, 0, owner="request-2")
    assert lease is not None
    theirs.release(lease)


def test_a_wait_is_bounded_by_the_timeout(engines: tuple[Engine, Engine]) -> None:
    mine, theirs = PostgresSessionLocks(engines[0]), PostgresSessionLocks(engines[1])
    held = mine.acquire(SID, None, owner="slow")
    assert held is not None
    started = time.monotonic()
    assert theirs.acquire(SID, 0.3, owner="fast") is None
    waited = time.monotonic() - started
    assert 0.25 <= waited < 3, waited
    other = mine.acquire(SID, 0.2, owner="another request of the same process")
    assert other is None, "two writers of one process exclude each other too"
    mine.release(held)


def test_a_waiter_gets_the_lock_when_the_holder_releases_it(engines: tuple[Engine, Engine]) -> None:
    mine, theirs = PostgresSessionLocks(engines[0]), PostgresSessionLocks(engines[1])
    held = mine.acquire(SID, None, owner="slow")
    assert held is not None
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(theirs.acquire(SID, 10, owner="patient")))
    waiter.start()
    time.sleep(0.3)
    assert got == []
    mine.release(held)
    waiter.join(timeout=10)
    assert got and got[0] is not None
    theirs.release(got[0])  # type: ignore[arg-type]


def test_busy_is_false_for_the_holder_itself_and_other_sessions_are_free(engines: tuple[Engine, Engine]) -> None:
    from igpt_server.store.locks import writer_identity

    mine, theirs = PostgresSessionLocks(engines[0]), PostgresSessionLocks(engines[1])
    with writer_identity("request-9"):
        lease = mine.acquire(SID, 1.0)
        assert lease is not None and not mine.busy(SID)
    assert mine.busy(SID), "another writer of the same process"
    other = "f" * 32
    free = theirs.acquire(other, 0, owner="x")
    assert free is not None
    theirs.release(free)
    mine.release(lease)


def test_a_crashed_holder_frees_the_lock(engines: tuple[Engine, Engine]) -> None:
    mine, theirs = PostgresSessionLocks(engines[0]), PostgresSessionLocks(engines[1])
    assert mine.acquire(SID, 1.0, owner="doomed") is not None
    mine.close()  # its connections close, as when a process dies
    lease = theirs.acquire(SID, 2.0, owner="next")
    assert lease is not None
    theirs.release(lease)

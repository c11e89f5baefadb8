"""Every API test runs twice: on the local store and on the shared store.

``local``: SQLite + files under the test's data directory (the default). ``shared``:
PostgreSQL + S3 (real engines started by tests/shared_store.py on loopback), selected by the
``IGPT_STORE__*`` environment, which every ``Settings()`` of the test reads.

The parameter is module-scoped, so a module-scoped fixture (a live server shared by the tests
of a module) can depend on ``store_backend`` and is built once per store. Each test still
gets a fresh database and bucket, unless its module sets ``ONE_STORE_PER_MODULE = True``
(its tests read what a module-scoped server wrote). A test about the local disk itself calls
:func:`tests.shared_store.local_only`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.shared_store import PostgresServer, S3Server, shared_env


@pytest.fixture(scope="module", params=["local", "shared"], autouse=True)
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Which store the module's apps use (``local`` or ``shared``)."""
    if request.param == "local":
        yield "local"
        return
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    s3: S3Server = request.getfixturevalue("s3_server")
    s3.reset()
    database = pg.create_database()
    patch = pytest.MonkeyPatch()
    for name, value in shared_env(pg, s3, database, f"igpt-{uuid.uuid4().hex[:12]}").items():
        patch.setenv(name, value)
    try:
        yield "shared"
    finally:
        patch.undo()
        pg.drop_database(database)


@pytest.fixture(autouse=True)
def _fresh_shared_store(
    store_backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """On the shared store: a database and a bucket of the test's own."""
    if store_backend != "shared" or getattr(request.module, "ONE_STORE_PER_MODULE", False):
        yield
        return
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    s3: S3Server = request.getfixturevalue("s3_server")
    database = pg.create_database()
    for name, value in shared_env(pg, s3, database, f"igpt-{uuid.uuid4().hex[:12]}").items():
        monkeypatch.setenv(name, value)
    try:
        yield
    finally:
        pg.drop_database(database)

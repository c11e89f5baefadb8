"""Alembic migrations of the store's metadata: old SQLite databases, and revisions == tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.store import db as dbmod
from igpt_server.store.schema import metadata
from tests.shared_store import PostgresServer

# the schema of the first release: no owner, no touched_at, no alembic_version
_FIRST_RELEASE = """
CREATE TABLE sessions (id TEXT PRIMARY KEY, created_at REAL NOT NULL, active_image TEXT, active_mask TEXT,
    materials TEXT NOT NULL DEFAULT '[]');
CREATE TABLE artifacts (session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, path TEXT NOT NULL,
    kind TEXT NOT NULL, parent TEXT, tool TEXT, width INTEGER, height INTEGER, size_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL, meta TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (session_id, path));
CREATE TABLE messages (session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    role TEXT NOT NULL, content TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq));
"""
SID = "0123456789abcdef0123456789abcdef"


def _old_database(data_dir: Path, *, with_owner: bool = False) -> None:
    data_dir.mkdir(parents=True)
    db = sqlite3.connect(data_dir / "igpt.sqlite3")
    db.executescript(_FIRST_RELEASE)
    if with_owner:  # a database the pre-Alembic _migrate had half upgraded
        db.execute("ALTER TABLE sessions ADD COLUMN owner TEXT")
    db.execute("INSERT INTO sessions (id, created_at, materials) VALUES (?, 1.0, '[]')", (SID,))
    db.execute(
        "INSERT INTO artifacts VALUES (?, 'image/aaaaaaaa_x.png', 'image', NULL, NULL, 2, 1, 3, 1.0, '{}')", (SID,)
    )
    db.execute("INSERT INTO messages VALUES (?, 1, 'user', 'hello', '{}', 1.0)", (SID,))
    db.commit()
    db.close()
    (data_dir / "sessions" / SID / "image").mkdir(parents=True)
    (data_dir / "sessions" / SID / "image" / "aaaaaaaa_x.png").write_bytes(b"abc")


def _revision(path: Path) -> str | None:
    with sqlite3.connect(path) as db:
        return str(db.execute("SELECT version_num FROM alembic_version").fetchone()[0])


@pytest.mark.parametrize("with_owner", [False, True], ids=["first-release", "half-upgraded"])
def test_a_database_from_before_alembic_is_upgraded_and_stamped(tmp_path: Path, with_owner: bool) -> None:
    data = tmp_path / "data"
    _old_database(data, with_owner=with_owner)
    store = SessionStore(data)
    try:
        state = store.get(SID)
        assert [a.path for a in state.artifacts] == ["image/aaaaaaaa_x.png"]
        assert [m.content for m in state.messages] == ["hello"]
        assert store.artifact_file(SID, "image/aaaaaaaa_x.png").read_bytes() == b"abc"
        assert store.expired_ids() == []  # the upgrade gave old sessions a touched_at
        store.append_message(SID, "user", "after the upgrade")
        new = store.create().id
        store.add_artifact(new, ArtifactKind.image, b"xy", ext="png")
    finally:
        store.close()
    assert _revision(data / "igpt.sqlite3") == dbmod.head_revision()
    with sqlite3.connect(data / "igpt.sqlite3") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
        touched = db.execute("SELECT touched_at FROM sessions WHERE id = ?", (SID,)).fetchone()[0]
    assert {"owner", "touched_at"} <= columns and touched is not None
    reopened = SessionStore(data)  # the fast path: already at head
    try:
        assert len(reopened.get(SID).messages) == 2
    finally:
        reopened.close()


def test_a_new_database_is_stamped_at_the_head(tmp_path: Path) -> None:
    SessionStore(tmp_path).close()
    assert _revision(tmp_path / "igpt.sqlite3") == dbmod.head_revision()
    with sqlite3.connect(tmp_path / "igpt.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _no_differences(engine_url: str) -> None:
    engine = create_engine(engine_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
        assert diff == [], f"the revisions and schema.py disagree: {diff}"
    finally:
        engine.dispose()


def test_the_revisions_build_the_tables_of_schema_py_on_sqlite(tmp_path: Path) -> None:
    """The create_all fast path and the revisions must agree, or old and new databases differ."""
    url = f"sqlite:///{tmp_path / 'revisions.sqlite3'}"
    engine = dbmod.sqlite_engine(tmp_path / "revisions.sqlite3")
    dbmod.run_revisions(engine)
    engine.dispose()
    _no_differences(url)
    fast = tmp_path / "fast"
    SessionStore(fast).close()
    _no_differences(f"sqlite:///{fast / 'igpt.sqlite3'}")


def test_the_revisions_build_the_tables_of_schema_py_on_postgresql(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    try:
        engine = dbmod.postgres_engine(postgres_server.url(name))
        dbmod.run_revisions(engine)
        assert set(inspect(engine).get_table_names()) >= {"sessions", "artifacts", "messages", "alembic_version"}
        engine.dispose()
        _no_differences(postgres_server.url(name))
    finally:
        postgres_server.drop_database(name)
    fast = postgres_server.create_database()
    try:
        engine = dbmod.postgres_engine(postgres_server.url(fast))
        dbmod.upgrade(engine)
        dbmod.upgrade(engine)  # again: the head check
        engine.dispose()
        _no_differences(postgres_server.url(fast))
    finally:
        postgres_server.drop_database(fast)

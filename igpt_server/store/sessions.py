"""The session and artifact store.

Layout on disk::

    <data_dir>/igpt.sqlite3                 metadata (sessions, artifacts, messages)
    <data_dir>/sessions/<id>/<kind>/<file>  artifact files

Sessions survive a restart: a new store on the same data directory sees them. All access
goes through one lock and one SQLite connection in WAL mode, so concurrent requests (the
thread pool of the ASGI server) are safe. Files are written to a temporary name and renamed,
so a reader never sees half a file. An artifact file is only ever opened through its row in
the registry: :meth:`SessionStore.artifact_file` rejects any path the registry does not hold.

Serving many people (see :mod:`igpt_server.store.limits`, :mod:`igpt_server.store.locks`,
:mod:`igpt_server.store.owner`): a session belongs to the API key that created it (another
key gets 404), idle sessions expire, writes respect byte quotas and a free-disk watermark,
and :meth:`SessionStore.writer` serialises the state-changing calls of one session.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from igpt_server.errors import InsufficientStorage, InvalidInput, NotFound, SessionBusy
from igpt_server.store.artifacts import (
    Artifact,
    ArtifactKind,
    Message,
    SessionState,
    is_artifact_path,
)
from igpt_server.store.limits import StoreLimits, check_room, room_left
from igpt_server.store.locks import LocalSessionLocks, SessionLocks
from igpt_server.store.owner import current_principal

_SESSION_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    active_image TEXT,
    active_mask TEXT,
    materials TEXT NOT NULL DEFAULT '[]',
    owner TEXT,
    touched_at REAL
);
CREATE TABLE IF NOT EXISTS artifacts (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT,
    tool TEXT,
    width INTEGER,
    height INTEGER,
    size_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (session_id, path)
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
);
"""

#: columns added after the first release, for databases made before them
_ADDED_COLUMNS = {"sessions": {"owner": "TEXT", "touched_at": "REAL"}}
#: a session's ``touched_at`` is rewritten at most this often (seconds)
_TOUCH_EVERY_S = 30.0

_UNSET: Any = object()


def safe_stem(name: str | None, default: str = "file") -> str:
    """A file-name stem made only of ``[A-Za-z0-9_-]`` (at most 40 characters)."""
    stem = Path(name or "").stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40]
    return stem or default


class SessionStore:
    """Sessions, their artifacts, active image and selection, materials and history."""

    def __init__(self, data_dir: Path, limits: StoreLimits | None = None, locks: SessionLocks | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.limits = limits or StoreLimits()
        self.locks: SessionLocks = locks or LocalSessionLocks()
        self.sessions_dir = self.data_dir / "sessions"
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.data_dir / "igpt.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, sql_type in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
        # sessions from before expiry existed get a full idle period from the upgrade on
        self._db.execute("UPDATE sessions SET touched_at = ? WHERE touched_at IS NULL", (time.time(),))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _disk_full_is_507():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # the writer lock ---------------------------------------------------------------------

    @contextmanager
    def writer(self, session_id: str, timeout: float | None = _UNSET) -> Iterator[None]:
        """Hold the session's writer lock (re-entrant for the same request) inside the block.

        Waits at most ``timeout`` seconds (default: ``limits.lock_timeout_s``), then raises
        :class:`SessionBusy` (409).
        """
        wait = self.limits.lock_timeout_s if timeout is _UNSET else timeout
        lease = self.locks.acquire(session_id, wait)
        if lease is None:
            raise SessionBusy(
                f"another request is still changing session {session_id!r}; wait for it to finish and retry",
                retry_after=max(1.0, (wait or 1.0) / 2),
            )
        try:
            yield
        finally:
            self.locks.release(lease)

    # sessions ---------------------------------------------------------------------------

    def create(self) -> SessionState:
        session_id = uuid.uuid4().hex
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sessions (id, created_at, owner, touched_at) VALUES (?, ?, ?, ?)",
                (session_id, now, current_principal(), now),
            )
        (self.sessions_dir / session_id).mkdir(parents=True, exist_ok=True)
        return self.get(session_id)

    def require(self, session_id: str) -> None:
        """Raise :class:`NotFound` unless the session exists, belongs to the current key and is not expired.

        A session of another key is reported exactly like one that does not exist. An expired
        session is deleted here (404 ``session_expired``). Using a session keeps it alive.
        """
        missing = f"no session {session_id!r}; create one with POST /api/sessions"
        if not isinstance(session_id, str) or not _SESSION_ID_RE.match(session_id):
            raise NotFound(missing)
        with self._lock:
            row = self._db.execute(
                "SELECT owner, touched_at, created_at FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        if row is None:
            raise NotFound(missing)
        principal = current_principal()
        if principal is not None and row["owner"] != principal:
            raise NotFound(missing)
        now = time.time()
        touched = row["touched_at"] if row["touched_at"] is not None else row["created_at"]
        idle = self.limits.idle_s
        if idle is not None and now - touched > idle and not self.locks.busy(session_id):
            self.drop(session_id)
            raise NotFound(
                f"session {session_id!r} expired after {idle:g} s without use; "
                "create a new one with POST /api/sessions",
                code="session_expired",
            )
        if now - touched > _TOUCH_EVERY_S:
            with self._transaction() as db:
                db.execute("UPDATE sessions SET touched_at = ? WHERE id = ?", (now, session_id))

    def expired_ids(self, now: float | None = None) -> list[str]:
        """Sessions idle for longer than ``limits.idle_s`` (none when expiry is off)."""
        if self.limits.idle_s is None:
            return []
        cutoff = (now or time.time()) - self.limits.idle_s
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM sessions WHERE COALESCE(touched_at, created_at) < ?", (cutoff,)
            ).fetchall()
        return [r["id"] for r in rows]

    def session_ids(self) -> list[str]:
        with self._lock:
            return [r["id"] for r in self._db.execute("SELECT id FROM sessions")]

    def count(self) -> int:
        """How many sessions exist."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def used_bytes(self, session_id: str | None = None) -> int:
        """Bytes of the artifacts of one session, or of every session."""
        with self._lock:
            if session_id is None:
                row = self._db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM artifacts").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COALESCE(SUM(size_bytes), 0) FROM artifacts WHERE session_id = ?", (session_id,)
                ).fetchone()
        return int(row[0])

    def room(self, session_id: str) -> tuple[int | None, Exception]:
        """Bytes the session may still write (``None``: unbounded), and the error past that."""
        return room_left(self.limits, self.data_dir, self.used_bytes(session_id), self.used_bytes())

    def check_room(self, session_id: str, size: int) -> None:
        """Raise :class:`QuotaExceeded` (413) or :class:`InsufficientStorage` (507) unless ``size`` bytes fit."""
        check_room(self.limits, self.data_dir, self.used_bytes(session_id), self.used_bytes(), size)

    def artifact_paths(self, session_id: str) -> set[str]:
        """Every registered artifact path of a session (no ownership check: for maintenance)."""
        with self._lock:
            rows = self._db.execute("SELECT path FROM artifacts WHERE session_id = ?", (session_id,)).fetchall()
        return {r["path"] for r in rows}

    def forget_artifacts(self, session_id: str, paths: set[str]) -> None:
        """Remove the rows of ``paths`` (whose files are gone) and every reference the session state holds."""
        if not paths:
            return
        with self._transaction() as db:
            row = db.execute(
                "SELECT active_image, active_mask, materials FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            for path in paths:
                db.execute("DELETE FROM artifacts WHERE session_id = ? AND path = ?", (session_id, path))
            if row is not None:
                image = None if row["active_image"] in paths else row["active_image"]
                mask = None if row["active_mask"] in paths or image is None else row["active_mask"]
                materials = [m for m in json.loads(row["materials"]) if m not in paths]
                db.execute(
                    "UPDATE sessions SET active_image = ?, active_mask = ?, materials = ? WHERE id = ?",
                    (image, mask, json.dumps(materials), session_id),
                )

    def drop(self, session_id: str) -> None:
        """Delete a session and its files without the ownership check (maintenance: expiry)."""
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        shutil.rmtree(self.sessions_dir / session_id, ignore_errors=True)

    def get(self, session_id: str) -> SessionState:
        self.require(session_id)
        with self._lock:
            row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
            artifacts = [
                _artifact_from_row(r)
                for r in self._db.execute(
                    "SELECT * FROM artifacts WHERE session_id = ? ORDER BY created_at, rowid",
                    (session_id,),
                )
            ]
            messages = self.messages(session_id)
        return SessionState(
            id=session_id,
            created_at=row["created_at"],
            active_image=row["active_image"],
            active_mask=row["active_mask"],
            materials=json.loads(row["materials"]),
            artifacts=artifacts,
            messages=messages,
        )

    def delete(self, session_id: str) -> None:
        self.require(session_id)
        self.drop(session_id)

    def update_state(
        self,
        session_id: str,
        *,
        active_image: str | None = _UNSET,
        active_mask: str | None = _UNSET,
        add_material: str | None = None,
    ) -> None:
        """Change the active image, the active selection, or append a material.

        Every path given must already be an artifact of this session.
        """
        for path in (active_image, active_mask, add_material):
            if isinstance(path, str):
                self.artifact(session_id, path)
        with self._transaction() as db:
            if active_image is not _UNSET:
                db.execute("UPDATE sessions SET active_image = ? WHERE id = ?", (active_image, session_id))
            if active_mask is not _UNSET:
                db.execute("UPDATE sessions SET active_mask = ? WHERE id = ?", (active_mask, session_id))
            if add_material is not None:
                row = db.execute("SELECT materials FROM sessions WHERE id = ?", (session_id,)).fetchone()
                materials = json.loads(row["materials"])
                if add_material not in materials:
                    materials.append(add_material)
                db.execute("UPDATE sessions SET materials = ? WHERE id = ?", (json.dumps(materials), session_id))

    # artifacts --------------------------------------------------------------------------

    def add_artifact(
        self,
        session_id: str,
        kind: ArtifactKind,
        content: bytes | Path,
        *,
        ext: str,
        stem: str = "file",
        parent: str | None = None,
        tool: str | None = None,
        width: int | None = None,
        height: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Artifact:
        """Store ``content`` (bytes, or a temporary file that is moved) as a new artifact."""
        self.require(session_id)
        if parent is not None:
            self.artifact(session_id, parent)
        path = f"{kind.value}/{uuid.uuid4().hex[:8]}_{safe_stem(stem)}.{ext.lower().lstrip('.')}"
        target = self._session_dir(session_id) / path
        self.check_room(session_id, len(content) if isinstance(content, bytes) else Path(content).stat().st_size)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            if isinstance(content, bytes):
                partial.write_bytes(content)
            else:
                shutil.move(str(content), partial)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(
                    "the server's disk is full; nothing was stored. Try again later", code="disk_full"
                ) from None
            raise
        artifact = Artifact(
            path=path,
            kind=kind,
            parent=parent,
            tool=tool,
            width=width,
            height=height,
            size_bytes=target.stat().st_size,
            created_at=time.time(),
            meta=meta or {},
        )
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        session_id,
                        artifact.path,
                        artifact.kind.value,
                        parent,
                        tool,
                        width,
                        height,
                        artifact.size_bytes,
                        artifact.created_at,
                        json.dumps(artifact.meta),
                    ),
                )
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return artifact

    def artifact(self, session_id: str, path: str, kinds: tuple[ArtifactKind, ...] = ()) -> Artifact:
        """The artifact at ``path`` in this session; :class:`NotFound` otherwise.

        With ``kinds``, an artifact of another kind is an :class:`InvalidInput`.
        """
        self.require(session_id)
        if not isinstance(path, str) or not is_artifact_path(path):
            raise NotFound(
                f"{path!r} is not an artifact of this session; artifact paths look like "
                "'image/3f9a0c1d_photo.png' (see GET /api/sessions/{id})"
            )
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM artifacts WHERE session_id = ? AND path = ?", (session_id, path)
            ).fetchone()
        if row is None:
            raise NotFound(f"no artifact {path!r} in this session (see GET /api/sessions/{{id}})")
        artifact = _artifact_from_row(row)
        if kinds and artifact.kind not in kinds:
            wanted = " or ".join(k.value for k in kinds)
            raise InvalidInput(f"{path!r} is a {artifact.kind.value}, but a {wanted} is needed here")
        return artifact

    def artifact_file(self, session_id: str, path: str) -> Path:
        """The file of a registered artifact; never a path outside the session folder."""
        artifact = self.artifact(session_id, path)
        session_dir = self._session_dir(session_id).resolve()
        file = (session_dir / artifact.path).resolve()
        if not file.is_relative_to(session_dir) or not file.is_file():
            raise NotFound(f"the file of artifact {path!r} is missing from the data directory")
        return file

    def new_upload_file(self, session_id: str) -> Path:
        """A fresh temporary file inside the session folder, for streaming an upload."""
        self.require(session_id)
        tmp_dir = self._session_dir(session_id) / ".incoming"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tmp_dir / uuid.uuid4().hex

    def _session_dir(self, session_id: str) -> Path:
        if not _SESSION_ID_RE.match(session_id):
            raise NotFound(f"no session {session_id!r}")
        return self.sessions_dir / session_id

    # history ----------------------------------------------------------------------------

    def record(self, session_id: str, record: Any) -> Message:
        """Append one typed history record (:data:`igpt_server.store.history.HistoryRecord`):
        the one writer of tool steps, gestures, undo/redo and captions."""
        from igpt_server.store import history

        return history.write(self, session_id, record)

    def append_message(self, session_id: str, role: str, content: str, data: dict[str, Any] | None = None) -> Message:
        self.require(session_id)
        created = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM messages WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            seq = int(row["next"])
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, seq, role, content, json.dumps(data or {}), created),
            )
        return Message(seq=seq, role=role, content=content, data=data or {}, created_at=created)

    def messages(self, session_id: str) -> list[Message]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
            ).fetchall()
        return [
            Message(
                seq=r["seq"],
                role=r["role"],
                content=r["content"],
                data=json.loads(r["data"]),
                created_at=r["created_at"],
            )
            for r in rows
        ]


@contextmanager
def _disk_full_is_507() -> Iterator[None]:
    """SQLite's "database or disk is full" is the server's storage being full (507), not a fault."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "full" in str(exc).lower():
            raise InsufficientStorage(
                "the server's disk is full; nothing was changed. Try again later", code="disk_full"
            ) from None
        raise


def _artifact_from_row(row: sqlite3.Row) -> Artifact:
    return Artifact(
        path=row["path"],
        kind=ArtifactKind(row["kind"]),
        parent=row["parent"],
        tool=row["tool"],
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        created_at=row["created_at"],
        meta=json.loads(row["meta"]),
    )

"""The session and artifact store, behind one interface with two backings.

``local`` (default, one process)::

    <data_dir>/igpt.sqlite3                 metadata (sessions, artifacts, messages)
    <data_dir>/sessions/<id>/<kind>/<file>  artifact files

``shared`` (several API replicas, :func:`igpt_server.store.factory.open_store`): the same
tables in PostgreSQL, artifact bytes as objects ``sessions/<id>/<kind>/<file>`` of an S3
bucket (:class:`~igpt_server.store.blobs.S3Blobs`), a bounded read-through cache of them
with the local layout under ``<data_dir>/sessions`` (tools read artifacts by local path), and
the writer lock as a PostgreSQL advisory lock
(:class:`~igpt_server.store.locks.PostgresSessionLocks`).

Metadata goes through SQLAlchemy Core (:mod:`igpt_server.store.schema`) with one query code
path for both dialects; :func:`igpt_server.store.db.upgrade` applies the Alembic revisions
when a store opens. SQLite: one connection in WAL mode with foreign keys on, all access under
one lock, writes in ``BEGIN IMMEDIATE``; a full disk is a 507. PostgreSQL: a connection pool;
a read-modify-write of one session locks its row (``SELECT ... FOR UPDATE``; SQLite ignores
it and is serialised by ``BEGIN IMMEDIATE``); an unreachable database is a 503
``store_unavailable``.

Nothing is half-written: an artifact's bytes are stored first (a temporary name and a rename,
or an upload) and its row is inserted only after that succeeded; the bytes are deleted again
if the insert fails. An artifact file is only ever reached through its row:
:meth:`SessionStore.artifact_file` rejects any path the registry does not hold. Deleting a
session deletes its rows first, then its bytes; bytes a failure leaves there have no row and
are removed by the start-up sweep (:mod:`igpt_server.store.sweep`).

Limits (:mod:`igpt_server.store.limits`): byte quotas are sums over the metadata in both
modes; the free-disk watermark applies to the file system of ``data_dir`` (in shared mode it
holds the cache and the uploads being streamed, the only local bytes: the object store has
its own capacity management). Serving many people (:mod:`igpt_server.store.owner`): a
session belongs to the API key that created it (another key gets 404), idle sessions expire,
and :meth:`SessionStore.writer` serialises the state-changing calls of one session.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from igpt_server.errors import InsufficientStorage, InvalidInput, NotFound, SessionBusy, StoreUnavailable
from igpt_server.store import db as dbmod
from igpt_server.store.artifacts import (
    Artifact,
    ArtifactKind,
    Message,
    SessionState,
    is_artifact_path,
)
from igpt_server.store.blobs import Blobs, LocalBlobs, S3Blobs
from igpt_server.store.limits import StoreLimits, check_room, room_left
from igpt_server.store.locks import LocalSessionLocks, SessionLocks
from igpt_server.store.owner import current_principal
from igpt_server.store.schema import artifacts as t_artifacts
from igpt_server.store.schema import messages as t_messages
from igpt_server.store.schema import sessions as t_sessions

_SESSION_ID_RE = re.compile(r"^[0-9a-f]{32}$")

#: a session's ``touched_at`` is rewritten at most this often (seconds)
_TOUCH_EVERY_S = 30.0

_UNSET: Any = object()


def safe_stem(name: str | None, default: str = "file") -> str:
    """A file-name stem made only of ``[A-Za-z0-9_-]`` (at most 40 characters)."""
    stem = Path(name or "").stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40]
    return stem or default


@dataclass(frozen=True)
class Download:
    """How to answer a download: a local ``file``, a presigned ``url`` (307), or ``chunks``
    streamed from the object store (``size`` bytes)."""

    media_type: str
    file: Path | None = None
    url: str | None = None
    chunks: Iterator[bytes] | None = None
    size: int | None = None


class SessionStore:
    """Sessions, their artifacts, active image and selection, materials and history.

    ``SessionStore(data_dir)`` is the local store. The shared one is built by
    :func:`igpt_server.store.factory.open_store` with a PostgreSQL ``engine``, ``S3Blobs``
    and ``PostgresSessionLocks``.
    """

    def __init__(
        self,
        data_dir: Path,
        limits: StoreLimits | None = None,
        locks: SessionLocks | None = None,
        *,
        engine: Engine | None = None,
        blobs: Blobs | None = None,
        downloads: Literal["stream", "redirect"] = "stream",
        presign_expiry_s: int = 300,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.limits = limits or StoreLimits()
        self.locks: SessionLocks = locks or LocalSessionLocks()
        self.sessions_dir = self.data_dir / "sessions"
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self.blobs: Blobs = blobs or LocalBlobs(self.sessions_dir)
        self.downloads = downloads
        self.presign_expiry_s = presign_expiry_s
        self._engine = engine or dbmod.sqlite_engine(self.data_dir / "igpt.sqlite3")
        self._sqlite = self._engine.dialect.name == "sqlite"
        #: SQLite: one connection, one user at a time; PostgreSQL: a pool, no process-wide lock
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._sqlite else contextlib.nullcontext()
        )
        with self._guard():
            dbmod.upgrade(self._engine)
        #: SQLite: the one connection, held for the store's life (a checkout per call costs more
        #: than the query); PostgreSQL: ``None``, each call checks one out of the pool
        self._conn: Connection | None = self._engine.connect() if self._sqlite else None

    @property
    def backend(self) -> Literal["local", "shared"]:
        """``local`` (SQLite + files) or ``shared`` (PostgreSQL + object store)."""
        return "local" if self._sqlite else "shared"

    def close(self) -> None:
        with self._lock:
            close_locks = getattr(self.locks, "close", None)
            if close_locks is not None:
                close_locks()
            if self._conn is not None:
                self._conn.close()
            self._engine.dispose()

    # database access --------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Database faults as API errors: SQLite's "disk is full" is 507; an unreachable
        PostgreSQL is 503 ``store_unavailable``."""
        try:
            yield
        except (OperationalError, PoolTimeout, DBAPIError) as exc:
            if self._sqlite:
                if isinstance(exc, OperationalError) and "full" in str(exc.orig).lower():
                    raise InsufficientStorage(
                        "the server's disk is full; nothing was changed. Try again later", code="disk_full"
                    ) from None
                raise
            lost = isinstance(exc, OperationalError | PoolTimeout | InterfaceError)
            lost = lost or bool(getattr(exc, "connection_invalidated", False))
            if not lost:  # a real fault (a constraint, a bug), not an unreachable database
                raise
            raise StoreUnavailable(
                f"the session database does not answer ({type(exc).__name__}); check that PostgreSQL at "
                f"{self._engine.url.render_as_string(hide_password=True)} is up and IGPT_STORE__DATABASE_URL "
                "is right, then retry",
                part="database",
            ) from None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            with self._engine.connect() as conn:
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads; they see one snapshot, ended at the block's end."""
        with self._lock, self._guard(), self._connection() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``), committed at the block's end."""
        with self._lock, self._guard(), self._connection() as conn:
            if self._sqlite:
                dbmod.immediate(conn)
            with conn.begin():
                yield conn

    def check(self) -> str:
        """A one-line state of the store for ``/api/ready``; raises when a part does not answer."""
        sessions = self.count()
        self.blobs.check()
        return f"{sessions} sessions"

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
                insert(t_sessions).values(
                    id=session_id, created_at=now, owner=current_principal(), touched_at=now, materials="[]"
                )
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
        with self._read() as db:
            row = db.execute(
                select(t_sessions.c.owner, t_sessions.c.touched_at, t_sessions.c.created_at).where(
                    t_sessions.c.id == session_id
                )
            ).first()
        if row is None:
            raise NotFound(missing)
        principal = current_principal()
        if principal is not None and row.owner != principal:
            raise NotFound(missing)
        now = time.time()
        touched = row.touched_at if row.touched_at is not None else row.created_at
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
                db.execute(update(t_sessions).where(t_sessions.c.id == session_id).values(touched_at=now))

    def expired_ids(self, now: float | None = None) -> list[str]:
        """Sessions idle for longer than ``limits.idle_s`` (none when expiry is off)."""
        if self.limits.idle_s is None:
            return []
        cutoff = (now or time.time()) - self.limits.idle_s
        with self._read() as db:
            rows = db.execute(
                select(t_sessions.c.id).where(func.coalesce(t_sessions.c.touched_at, t_sessions.c.created_at) < cutoff)
            ).all()
        return [r.id for r in rows]

    def session_ids(self) -> list[str]:
        with self._read() as db:
            return [r.id for r in db.execute(select(t_sessions.c.id))]

    def count(self) -> int:
        """How many sessions exist."""
        with self._read() as db:
            return int(db.execute(select(func.count()).select_from(t_sessions)).scalar_one())

    def used_bytes(self, session_id: str | None = None) -> int:
        """Bytes of the artifacts of one session, or of every session."""
        query = select(func.coalesce(func.sum(t_artifacts.c.size_bytes), 0))
        if session_id is not None:
            query = query.where(t_artifacts.c.session_id == session_id)
        with self._read() as db:
            return int(db.execute(query).scalar_one())

    def room(self, session_id: str) -> tuple[int | None, Exception]:
        """Bytes the session may still write (``None``: unbounded), and the error past that."""
        return room_left(self.limits, self.data_dir, self.used_bytes(session_id), self.used_bytes())

    def check_room(self, session_id: str, size: int) -> None:
        """Raise :class:`QuotaExceeded` (413) or :class:`InsufficientStorage` (507) unless ``size`` bytes fit."""
        check_room(self.limits, self.data_dir, self.used_bytes(session_id), self.used_bytes(), size)

    def artifact_paths(self, session_id: str) -> set[str]:
        """Every registered artifact path of a session (no ownership check: for maintenance)."""
        with self._read() as db:
            rows = db.execute(select(t_artifacts.c.path).where(t_artifacts.c.session_id == session_id)).all()
        return {r.path for r in rows}

    def forget_artifacts(self, session_id: str, paths: set[str]) -> None:
        """Remove the rows of ``paths`` (whose files are gone) and every reference the session state holds."""
        if not paths:
            return
        with self._transaction() as db:
            row = db.execute(_locked_session(session_id)).first()
            db.execute(delete(t_artifacts).where(t_artifacts.c.session_id == session_id, t_artifacts.c.path.in_(paths)))
            if row is not None:
                image = None if row.active_image in paths else row.active_image
                mask = None if row.active_mask in paths or image is None else row.active_mask
                materials = [m for m in json.loads(row.materials) if m not in paths]
                db.execute(
                    update(t_sessions)
                    .where(t_sessions.c.id == session_id)
                    .values(active_image=image, active_mask=mask, materials=json.dumps(materials))
                )

    def drop(self, session_id: str) -> None:
        """Delete a session and its files without the ownership check (maintenance: expiry)."""
        with self._transaction() as db:
            db.execute(delete(t_sessions).where(t_sessions.c.id == session_id))
        self.blobs.delete_session(session_id)

    def get(self, session_id: str) -> SessionState:
        self.require(session_id)
        with self._read() as db:
            row = db.execute(select(t_sessions).where(t_sessions.c.id == session_id)).first()
            if row is None:  # deleted by another request in between
                raise NotFound(f"no session {session_id!r}; create one with POST /api/sessions")
            artifacts = [
                _artifact_from_row(r)
                for r in db.execute(
                    select(t_artifacts)
                    .where(t_artifacts.c.session_id == session_id)
                    .order_by(t_artifacts.c.created_at, t_artifacts.c.path)
                )
            ]
            messages = self._messages(db, session_id)
        return SessionState(
            id=session_id,
            created_at=row.created_at,
            active_image=row.active_image,
            active_mask=row.active_mask,
            materials=json.loads(row.materials),
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
        values: dict[str, Any] = {}
        if active_image is not _UNSET:
            values["active_image"] = active_image
        if active_mask is not _UNSET:
            values["active_mask"] = active_mask
        with self._transaction() as db:
            if add_material is not None:
                row = db.execute(_locked_session(session_id)).first()
                materials = json.loads(row.materials) if row is not None else []
                if add_material not in materials:
                    materials.append(add_material)
                values["materials"] = json.dumps(materials)
            if values:
                db.execute(update(t_sessions).where(t_sessions.c.id == session_id).values(**values))

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
        """Store ``content`` (bytes, or a temporary file that is moved) as a new artifact.

        The bytes are stored first and the row inserted after; a failed insert deletes the
        bytes again, so a failure leaves neither.
        """
        self.require(session_id)
        if parent is not None:
            self.artifact(session_id, parent)
        path = f"{kind.value}/{uuid.uuid4().hex[:8]}_{safe_stem(stem)}.{ext.lower().lstrip('.')}"
        self.check_room(session_id, len(content) if isinstance(content, bytes) else Path(content).stat().st_size)
        size = self.blobs.put(session_id, path, content)
        artifact = Artifact(
            path=path,
            kind=kind,
            parent=parent,
            tool=tool,
            width=width,
            height=height,
            size_bytes=size,
            created_at=time.time(),
            meta=meta or {},
        )
        try:
            with self._transaction() as db:
                db.execute(
                    insert(t_artifacts).values(
                        session_id=session_id,
                        path=artifact.path,
                        kind=artifact.kind.value,
                        parent=parent,
                        tool=tool,
                        width=width,
                        height=height,
                        size_bytes=artifact.size_bytes,
                        created_at=artifact.created_at,
                        meta=json.dumps(artifact.meta),
                    )
                )
        except BaseException:
            with contextlib.suppress(Exception):  # unreachable too: the start-up sweep removes it
                self.blobs.delete(session_id, path)
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
        with self._read() as db:
            row = db.execute(
                select(t_artifacts).where(t_artifacts.c.session_id == session_id, t_artifacts.c.path == path)
            ).first()
        if row is None:
            raise NotFound(f"no artifact {path!r} in this session (see GET /api/sessions/{{id}})")
        artifact = _artifact_from_row(row)
        if kinds and artifact.kind not in kinds:
            wanted = " or ".join(k.value for k in kinds)
            raise InvalidInput(f"{path!r} is a {artifact.kind.value}, but a {wanted} is needed here")
        return artifact

    def artifact_file(self, session_id: str, path: str) -> Path:
        """The local file of a registered artifact; never a path outside the session folder.

        In shared mode it is a file of the read-through cache (downloaded on first use).
        """
        artifact = self.artifact(session_id, path)
        file = self.blobs.local_file(session_id, artifact.path)
        if file is None:
            where = "the data directory" if self._sqlite else "the object store"
            raise NotFound(f"the file of artifact {path!r} is missing from {where}")
        return file

    def download(self, session_id: str, path: str) -> Download:
        """How to send a registered artifact to a client (see :class:`Download`).

        Local: the file. Shared with ``downloads="redirect"``: a presigned URL of the object
        store. Shared with ``downloads="stream"``: the cached file when this replica has it,
        else the object streamed from the store (without filling the cache).
        """
        artifact = self.artifact(session_id, path)
        media_type = mimetypes.guess_type(artifact.path)[0] or "application/octet-stream"
        blobs = self.blobs
        if not isinstance(blobs, S3Blobs):
            return Download(media_type, file=self.artifact_file(session_id, path))
        if self.downloads == "redirect":
            return Download(
                media_type, url=blobs.presigned_url(session_id, artifact.path, self.presign_expiry_s, media_type)
            )
        cached = blobs.cache.local_file(session_id, artifact.path)
        if cached is not None:
            return Download(media_type, file=cached)
        opened = blobs.open_stream(session_id, artifact.path)
        if opened is None:
            raise NotFound(f"the file of artifact {path!r} is missing from the object store")
        size, chunks = opened
        return Download(media_type, chunks=chunks, size=size)

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
            if db.execute(_locked_session(session_id)).first() is None:
                raise NotFound(f"no session {session_id!r}; create one with POST /api/sessions")
            seq = int(
                db.execute(
                    select(func.coalesce(func.max(t_messages.c.seq), 0) + 1).where(
                        t_messages.c.session_id == session_id
                    )
                ).scalar_one()
            )
            db.execute(
                insert(t_messages).values(
                    session_id=session_id,
                    seq=seq,
                    role=role,
                    content=content,
                    data=json.dumps(data or {}),
                    created_at=created,
                )
            )
        return Message(seq=seq, role=role, content=content, data=data or {}, created_at=created)

    def messages(self, session_id: str) -> list[Message]:
        with self._read() as db:
            return self._messages(db, session_id)

    @staticmethod
    def _messages(db: Connection, session_id: str) -> list[Message]:
        rows = db.execute(
            select(t_messages).where(t_messages.c.session_id == session_id).order_by(t_messages.c.seq)
        ).all()
        return [
            Message(seq=r.seq, role=r.role, content=r.content, data=json.loads(r.data), created_at=r.created_at)
            for r in rows
        ]


def _locked_session(session_id: str) -> Any:
    """The session's row, locked until the transaction ends (PostgreSQL; SQLite ignores it)."""
    return select(t_sessions).where(t_sessions.c.id == session_id).with_for_update()


def _artifact_from_row(row: Any) -> Artifact:
    return Artifact(
        path=row.path,
        kind=ArtifactKind(row.kind),
        parent=row.parent,
        tool=row.tool,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
        meta=json.loads(row.meta),
    )

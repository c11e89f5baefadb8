"""The metadata tables of the session store, one definition for SQLite and PostgreSQL.

Tables (SQLAlchemy Core)::

    sessions   id (32 hex chars, key), created_at (unix s), active_image, active_mask
               (artifact paths or NULL), materials (JSON list of paths), owner (API key
               name or NULL), touched_at (unix s of the last use)
    artifacts  (session_id, path) key; kind, parent, tool, width, height, size_bytes,
               created_at, meta (JSON object); rows go with their session (ON DELETE CASCADE)
    messages   (session_id, seq) key; role, content, data (JSON object), created_at

JSON columns are ``TEXT`` holding ``json.dumps`` output in both dialects, so the same rows
move between them unchanged. Schema changes are Alembic revisions under
:mod:`igpt_server.store.migrations`; :func:`igpt_server.store.migrate.upgrade` applies them
when a store opens.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, Table, Text

metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("active_image", Text),
    Column("active_mask", Text),
    Column("materials", Text, nullable=False, server_default="[]"),
    Column("owner", Text),
    Column("touched_at", Float),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("session_id", Text, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("parent", Text),
    Column("tool", Text),
    Column("width", Integer),
    Column("height", Integer),
    Column("size_bytes", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("meta", Text, nullable=False, server_default="{}"),
)

messages = Table(
    "messages",
    metadata,
    Column("session_id", Text, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("data", Text, nullable=False, server_default="{}"),
    Column("created_at", Float, nullable=False),
)

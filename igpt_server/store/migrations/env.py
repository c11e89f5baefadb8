"""Alembic environment of the session store: runs on the connection handed over by
:func:`igpt_server.store.migrate.upgrade` (``config.attributes["connection"]``)."""

from __future__ import annotations

from alembic import context

from igpt_server.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

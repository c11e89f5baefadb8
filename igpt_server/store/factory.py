"""Build the session store the settings ask for (``IGPT_STORE__BACKEND``).

* ``local``: :class:`~igpt_server.store.sessions.SessionStore` on ``data_dir`` (SQLite +
  files, the per-process writer lock).
* ``shared``: the same class on a PostgreSQL engine (``IGPT_STORE__DATABASE_URL``), with
  :class:`~igpt_server.store.blobs.S3Blobs` (bucket ``IGPT_STORE__S3_BUCKET`` at
  ``IGPT_STORE__S3_ENDPOINT_URL``; its read-through cache under ``data_dir``) and
  :class:`~igpt_server.store.locks.PostgresSessionLocks`. When PostgreSQL or the object
  store cannot be reached at start-up, :func:`open_store` raises
  :class:`~igpt_server.errors.StoreUnavailable`, whose message says what to check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from igpt_server.errors import StoreUnavailable
from igpt_server.store.limits import limits_from
from igpt_server.store.sessions import SessionStore

if TYPE_CHECKING:
    from igpt_server.settings import Settings


def open_store(settings: Settings) -> SessionStore:
    """The store of ``settings.store.backend`` (see the module docstring)."""
    config = settings.store
    limits = limits_from(settings)
    if config.backend == "local":
        return SessionStore(settings.data_dir, limits)
    from igpt_server.store import db
    from igpt_server.store.blobs import S3Blobs, S3Config
    from igpt_server.store.locks import PostgresSessionLocks

    if config.database_url is None:
        raise StoreUnavailable(
            "IGPT_STORE__BACKEND=shared needs IGPT_STORE__DATABASE_URL "
            "(e.g. postgresql+psycopg://igpt:pw@db:5432/igpt)",
            part="database",
        )
    engine = db.postgres_engine(config.database_url.get_secret_value())
    lock_engine = db.postgres_engine(
        config.database_url.get_secret_value(), pool_size=2, max_overflow=config.max_lock_connections
    )
    try:
        blobs = S3Blobs(
            S3Config(
                bucket=config.s3_bucket,
                endpoint_url=config.s3_endpoint_url,
                region=config.s3_region,
                access_key_id=config.s3_access_key_id.get_secret_value() if config.s3_access_key_id else None,
                secret_access_key=(
                    config.s3_secret_access_key.get_secret_value() if config.s3_secret_access_key else None
                ),
            ),
            cache_root=settings.data_dir / "sessions",
            cache_max_bytes=config.cache_max_bytes,
        )
        return SessionStore(
            settings.data_dir,
            limits,
            PostgresSessionLocks(lock_engine),
            engine=engine,
            blobs=blobs,
            downloads=config.downloads,
            presign_expiry_s=config.presign_expiry_s,
        )
    except BaseException:
        engine.dispose()
        lock_engine.dispose()
        raise

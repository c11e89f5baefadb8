"""Byte quotas, the free-disk watermark and idle expiry of the session store.

* ``session_quota_bytes``: the artifacts of one session together; past it, a new artifact or
  upload is a 413 ``quota_exceeded`` (fix: delete the session or start a new one);
* ``global_quota_bytes``: every session's artifacts together; past it, 507 ``storage_full``;
* ``min_free_bytes``: the data directory's file system must keep this much free after a
  write; under it, uploads and new artifacts are a 507 ``storage_full``;
* ``idle_s``: a session untouched this long expires (a request for it is a 404
  ``session_expired``; the sweeper deletes it);
* ``lock_timeout_s``: how long a state-changing call waits for the session's writer lock
  before a 409 ``session_busy``.

``None`` switches a limit off.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from igpt_server.errors import InsufficientStorage, QuotaExceeded

if TYPE_CHECKING:
    from igpt_server.settings import Settings

MiB = 1024 * 1024


@dataclass(frozen=True)
class StoreLimits:
    session_quota_bytes: int | None = None
    global_quota_bytes: int | None = None
    min_free_bytes: int | None = None
    idle_s: float | None = None
    lock_timeout_s: float | None = None


def free_bytes(path: Path) -> int:
    """Free bytes of the file system holding ``path``."""
    return shutil.disk_usage(path).free


def room_left(limits: StoreLimits, data_dir: Path, session_used: int, global_used: int) -> tuple[int | None, Exception]:
    """How many more bytes may be written now, and the error to raise past that.

    ``None`` means unbounded. The error names the limit that is the tightest.
    """
    candidates: list[tuple[int, Exception]] = []
    if limits.session_quota_bytes is not None:
        candidates.append(
            (
                limits.session_quota_bytes - session_used,
                QuotaExceeded(
                    f"this session holds {session_used / MiB:.1f} MiB of its {limits.session_quota_bytes / MiB:.1f} "
                    "MiB quota; delete the session or start a new one (or raise IGPT_SESSION_QUOTA_BYTES)"
                ),
            )
        )
    if limits.global_quota_bytes is not None:
        candidates.append(
            (
                limits.global_quota_bytes - global_used,
                InsufficientStorage(
                    "the server's storage quota is used up; try again later (the operator can raise "
                    "IGPT_GLOBAL_QUOTA_BYTES or expire sessions sooner with IGPT_SESSION_IDLE_S)"
                ),
            )
        )
    if limits.min_free_bytes is not None:
        candidates.append(
            (
                free_bytes(data_dir) - limits.min_free_bytes,
                InsufficientStorage(
                    "the server's disk is nearly full; try again later (the operator can free disk or lower "
                    "IGPT_MIN_FREE_BYTES)",
                    code="disk_full",
                ),
            )
        )
    if not candidates:
        return None, InsufficientStorage("no room")
    room, error = min(candidates, key=lambda c: c[0])
    return max(room, 0), error


def check_room(limits: StoreLimits, data_dir: Path, session_used: int, global_used: int, size: int) -> None:
    """Raise the tightest limit's error unless ``size`` more bytes fit."""
    room, error = room_left(limits, data_dir, session_used, global_used)
    if room is not None and size > room:
        raise error


def limits_from(settings: Settings) -> StoreLimits:
    """The store's limits from the server settings."""
    return StoreLimits(
        session_quota_bytes=settings.session_quota_bytes,
        global_quota_bytes=settings.global_quota_bytes,
        min_free_bytes=settings.min_free_bytes,
        idle_s=settings.session_idle_s,
        lock_timeout_s=settings.session_lock_timeout_s,
    )

"""Keeping the data directory honest: the start-up sweep and the idle-session sweeper.

* :func:`startup_sweep` (run once before serving): a crash can leave a file whose row was
  never written (killed between the rename and the insert), an upload half-streamed into
  ``.incoming/``, a ``.partial`` file, or a session folder whose row is gone; these are
  removed. A row whose file is gone (a disk restored from an older backup, a hand-deleted
  file) is removed with every reference to it in the session state, and reported in the log.
* In shared mode (:class:`~igpt_server.store.blobs.S3Blobs`) the same holds for objects: an
  object without a row is deleted once older than :data:`ORPHAN_GRACE_S` (another replica
  may be between its upload and its insert), a row whose object is gone is forgotten (rows
  are read *before* the bucket is listed: a row's object is uploaded before the row is
  inserted, so a listed-later bucket holds it unless it is really gone). The local cache
  loses the folders of sessions that no longer exist and any leftover partial or upload file.
* :class:`IdleSweeper`: a daemon thread that deletes sessions idle longer than
  ``IGPT_SESSION_IDLE_S`` every ``interval_s`` seconds, skipping sessions a request is
  changing right now.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from igpt_server.store.blobs import S3Blobs
from igpt_server.store.sessions import SessionStore

log = logging.getLogger(__name__)

#: shared mode: an object without a row is an orphan only when older than this (seconds)
ORPHAN_GRACE_S = 3600.0


@dataclass
class SweepReport:
    """What the start-up sweep removed (paths relative to ``<data_dir>/sessions``)."""

    orphan_files: list[str] = field(default_factory=list)
    orphan_dirs: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)

    def total(self) -> int:
        return len(self.orphan_files) + len(self.orphan_dirs) + len(self.missing_files)


def startup_sweep(store: SessionStore) -> SweepReport:
    """Remove unregistered files and folders, and the rows of files that are gone."""
    if isinstance(store.blobs, S3Blobs):
        report = _sweep_objects(store, store.blobs)
        _log(report)
        return report
    report = SweepReport()
    known = set(store.session_ids())
    for folder in sorted(store.sessions_dir.iterdir()):
        if not folder.is_dir() or folder.name not in known:
            report.orphan_dirs.append(folder.name)
            shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)
    for session_id in sorted(known):
        folder = store.sessions_dir / session_id
        registered = store.artifact_paths(session_id)
        if folder.is_dir():
            for file in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
                relative = file.relative_to(folder).as_posix()
                if relative not in registered:
                    report.orphan_files.append(f"{session_id}/{relative}")
                    file.unlink(missing_ok=True)
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
                if not any(sub.iterdir()):
                    sub.rmdir()
        else:
            folder.mkdir(parents=True, exist_ok=True)
        gone = {path for path in registered if not (folder / path).is_file()}
        if gone:
            report.missing_files += [f"{session_id}/{path}" for path in sorted(gone)]
            store.forget_artifacts(session_id, gone)
    _log(report)
    return report


def _sweep_objects(store: SessionStore, blobs: S3Blobs) -> SweepReport:
    report = SweepReport()
    registered = {session_id: store.artifact_paths(session_id) for session_id in store.session_ids()}
    present: dict[str, set[str]] = {}
    orphan_sessions: set[str] = set()
    for obj in blobs.objects():
        present.setdefault(obj.session_id, set()).add(obj.path)
        if obj.path not in registered.get(obj.session_id, ()) and obj.age_s > ORPHAN_GRACE_S:
            blobs.delete(obj.session_id, obj.path)
            report.orphan_files.append(f"{obj.session_id}/{obj.path}")
            if obj.session_id not in registered:
                orphan_sessions.add(obj.session_id)
    report.orphan_dirs += sorted(orphan_sessions)
    for session_id, paths in sorted(registered.items()):
        gone = paths - present.get(session_id, set())
        if gone:
            report.missing_files += [f"{session_id}/{path}" for path in sorted(gone)]
            store.forget_artifacts(session_id, gone)
    _sweep_cache(blobs.cache.root, set(registered))
    return report


def _sweep_cache(root: Path, known: set[str]) -> None:
    """The local cache keeps only sessions that exist, and no partial or upload leftovers."""
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name not in known:
            shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)
            continue
        for leftover in [*folder.rglob("*.partial"), *folder.glob(".incoming/*")]:
            leftover.unlink(missing_ok=True)


def _log(report: SweepReport) -> None:
    if report.missing_files:
        log.warning("start-up sweep: artifact files missing, rows removed: %s", ", ".join(report.missing_files))
    if report.orphan_files or report.orphan_dirs:
        log.info(
            "start-up sweep: removed %d unregistered files and %d orphan session folders",
            len(report.orphan_files),
            len(report.orphan_dirs),
        )


def expire_idle(store: SessionStore) -> list[str]:
    """Delete every session idle past the limit that no request is changing; returns their ids."""
    removed = []
    for session_id in store.expired_ids():
        if store.locks.busy(session_id):
            continue
        lease = store.locks.acquire(session_id, 0)
        if lease is None:
            continue
        try:
            if session_id in store.expired_ids():
                store.drop(session_id)
                removed.append(session_id)
        finally:
            store.locks.release(lease)
    if removed:
        log.info("expired %d idle sessions", len(removed))
    return removed


class IdleSweeper:
    """A daemon thread running :func:`expire_idle` every ``interval_s`` seconds until :meth:`stop`."""

    def __init__(self, store: SessionStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="igpt-idle-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                expire_idle(self.store)
            except Exception:  # the sweeper must outlive a bad moment (a locked database, a full disk)
                log.exception("idle sweep failed; retrying in %.0f s", self.interval_s)

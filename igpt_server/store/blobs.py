"""Where artifact bytes live: files under the data directory, or objects in an S3 store.

Both implement :class:`Blobs`; an artifact is addressed by ``(session_id, path)`` with
``path`` as in the registry (``image/3f9a0c1d_photo.png``). Artifacts are immutable: a path
is written once and never changed, only deleted with its session (or by the start-up sweep).

* :class:`LocalBlobs`: ``<root>/<session_id>/<path>`` (``root`` is ``<data_dir>/sessions``),
  written to ``.<name>.partial`` and renamed, so a reader never sees half a file.
* :class:`S3Blobs`: objects ``sessions/<session_id>/<path>`` in one bucket (created when
  missing), plus a bounded read-through cache with the local layout under the data
  directory, because tools read artifacts by local path. The cache never goes stale (the
  objects never change); a file written here goes to the cache as it is uploaded; past
  ``cache_max_bytes`` the least recently used files are evicted (files used in the last
  :data:`EVICT_GRACE_S` seconds are kept: a tool may be reading them). Any failure to reach
  the object store is a :class:`~igpt_server.errors.StoreUnavailable` (503) naming the
  endpoint and bucket to check.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from igpt_server.errors import InsufficientStorage, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
#: files of the S3 cache used this recently are never evicted (seconds)
EVICT_GRACE_S = 60.0
_CHUNK = 1024 * 1024


class Blobs(Protocol):
    """The bytes of artifacts (see the module docstring)."""

    def put(self, session_id: str, path: str, content: bytes | Path) -> int:
        """Store ``content`` (bytes, or a file that is moved away) at ``path``; returns its size."""
        ...

    def delete(self, session_id: str, path: str) -> None: ...

    def delete_session(self, session_id: str) -> None:
        """Delete every artifact of the session (no error when there is none)."""
        ...

    def local_file(self, session_id: str, path: str) -> Path | None:
        """A local file holding the artifact's bytes; ``None`` when the artifact has none."""
        ...

    def check(self) -> None:
        """Raise :class:`StoreUnavailable` when the bytes cannot be reached (for ``/api/ready``)."""
        ...


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _write_atomic(target: Path, content: bytes | Path) -> None:
    """Write or move ``content`` to ``target`` through a ``.partial`` name (disk full: 507)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:6]}.partial")
    try:
        if isinstance(content, bytes):
            partial.write_bytes(content)
        else:
            shutil.move(str(content), partial)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if _disk_full(exc):
            raise InsufficientStorage(
                "the server's disk is full; nothing was stored. Try again later", code="disk_full"
            ) from None
        raise


class LocalBlobs:
    """Artifact files under ``root`` (``<data_dir>/sessions``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def file(self, session_id: str, path: str) -> Path | None:
        """``<root>/<session_id>/<path>``, or ``None`` when it would leave the session folder."""
        folder = (self.root / session_id).resolve()
        file = (folder / path).resolve()
        return file if file.is_relative_to(folder) else None

    def put(self, session_id: str, path: str, content: bytes | Path) -> int:
        target = self.file(session_id, path)
        if target is None:
            raise ValueError(f"artifact path {path!r} leaves its session folder")
        _write_atomic(target, content)
        return target.stat().st_size

    def delete(self, session_id: str, path: str) -> None:
        target = self.file(session_id, path)
        if target is not None:
            target.unlink(missing_ok=True)

    def delete_session(self, session_id: str) -> None:
        shutil.rmtree(self.root / session_id, ignore_errors=True)

    def local_file(self, session_id: str, path: str) -> Path | None:
        file = self.file(session_id, path)
        return file if file is not None and file.is_file() else None

    def check(self) -> None:
        return None


@dataclass(frozen=True)
class S3Config:
    """How to reach the object store (from ``StoreSettings``)."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0
    max_attempts: int = 2


@dataclass(frozen=True)
class StoredObject:
    """One object of the bucket, as the start-up sweep sees it."""

    session_id: str
    path: str
    age_s: float


_boto_lock = threading.Lock()
_boto_session: Any = None


def _client(config: S3Config) -> Any:
    """A boto3 S3 client; one botocore session per process (clients build much faster)."""
    global _boto_session
    import boto3
    from botocore.config import Config

    with _boto_lock:
        if _boto_session is None:
            _boto_session = boto3.session.Session()
        return _boto_session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            config=Config(
                connect_timeout=config.connect_timeout_s,
                read_timeout=config.read_timeout_s,
                retries={"max_attempts": config.max_attempts, "mode": "standard"},
                s3={"addressing_style": "path"},
                signature_version="s3v4",
            ),
        )


class S3Blobs:
    """Artifacts as objects ``sessions/<session_id>/<path>`` of one bucket, with a local cache."""

    PREFIX = "sessions/"

    def __init__(self, config: S3Config, cache_root: Path, cache_max_bytes: int | None = None) -> None:
        self.config = config
        self.bucket = config.bucket
        self.cache = LocalBlobs(cache_root)
        self.cache_max_bytes = cache_max_bytes
        self._client = _client(config)
        self._cache_lock = threading.Lock()
        self._cache_bytes = sum(f.stat().st_size for f in self._cache_files())
        self._ensure_bucket()

    # errors -----------------------------------------------------------------------------

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.config.endpoint_url or 'AWS S3 ' + self.config.region}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one S3 call; an unreachable or failing store is a :class:`StoreUnavailable`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise
            reason = f"{code or status}"
            hint = (
                "check IGPT_STORE__S3_ACCESS_KEY_ID / IGPT_STORE__S3_SECRET_ACCESS_KEY"
                if status in (401, 403)
                else "check that the object store is up"
            )
        except BotoCoreError as exc:
            reason = type(exc).__name__
            hint = "check that the object store is up and IGPT_STORE__S3_ENDPOINT_URL is right"
        raise StoreUnavailable(
            f"the object store does not answer ({what}: {reason}) at {self._where()}; {hint}, then retry",
            part="object_store",
        ) from None

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("head bucket", lambda: self._client.head_bucket(Bucket=self.bucket))
        except ClientError:
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.config.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.config.region}
            with contextlib.suppress(ClientError):  # created by another replica meanwhile
                self._call("create bucket", lambda: self._client.create_bucket(**kwargs))

    def key(self, session_id: str, path: str) -> str:
        return f"{self.PREFIX}{session_id}/{path}"

    # Blobs ------------------------------------------------------------------------------

    def put(self, session_id: str, path: str, content: bytes | Path) -> int:
        key = self.key(session_id, path)
        if isinstance(content, bytes):
            size = len(content)
            self._call("upload", lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=content))
        else:
            size = Path(content).stat().st_size
            self._call("upload", lambda: self._client.upload_file(str(content), self.bucket, key))
        try:  # write-through: this replica will most likely read it next
            self.cache.put(session_id, path, content)
            self._cached(size)
        except (OSError, InsufficientStorage):
            log.warning("could not cache %s/%s locally; it is stored in the object store", session_id, path)
        return size

    def delete(self, session_id: str, path: str) -> None:
        key = self.key(session_id, path)
        self._call("delete", lambda: self._client.delete_object(Bucket=self.bucket, Key=key))
        self.cache.delete(session_id, path)

    def delete_session(self, session_id: str) -> None:
        prefix = f"{self.PREFIX}{session_id}/"
        while True:
            listed = self._call(
                "list", lambda: self._client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1000)
            )
            keys = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if keys:
                batch = {"Objects": keys}
                self._call("delete", partial(self._client.delete_objects, Bucket=self.bucket, Delete=batch))
            if not listed.get("IsTruncated"):
                break
        self.cache.delete_session(session_id)

    def local_file(self, session_id: str, path: str) -> Path | None:
        from botocore.exceptions import ClientError

        target = self.cache.file(session_id, path)
        if target is None:
            return None
        if target.is_file():
            os.utime(target)  # recently used: evicted last
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:6]}.partial")
        key = self.key(session_id, path)
        try:
            self._call("download", lambda: self._client.download_file(self.bucket, key, str(partial)))
            os.replace(partial, target)
        except ClientError:
            return None
        except OSError as exc:
            if _disk_full(exc):
                raise InsufficientStorage(
                    "the server's cache disk is full; try again later", code="disk_full"
                ) from None
            raise
        finally:
            partial.unlink(missing_ok=True)
        self._cached(target.stat().st_size)
        return target

    def check(self) -> None:
        self._call("head bucket", lambda: self._client.head_bucket(Bucket=self.bucket))

    # downloads --------------------------------------------------------------------------

    def presigned_url(self, session_id: str, path: str, expiry_s: int, media_type: str) -> str:
        """A URL that fetches the object without credentials for ``expiry_s`` seconds."""
        params = {"Bucket": self.bucket, "Key": self.key(session_id, path), "ResponseContentType": media_type}
        url: str = self._call(
            "presign", lambda: self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expiry_s)
        )
        return url

    def open_stream(self, session_id: str, path: str) -> tuple[int, Iterator[bytes]] | None:
        """``(size, chunks)`` of the object, ``None`` when it is missing."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(session_id, path)
        try:
            answer = self._call("download", lambda: self._client.get_object(Bucket=self.bucket, Key=key))
        except ClientError:
            return None
        body = answer["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(_CHUNK)
            except BotoCoreError:
                log.warning("the object store stopped in the middle of %s", key)
                raise
            finally:
                body.close()

        return int(answer["ContentLength"]), chunks()

    # maintenance ------------------------------------------------------------------------

    def objects(self) -> Iterator[StoredObject]:
        """Every artifact object of the bucket (for the start-up sweep)."""
        now = time.time()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.PREFIX, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            listed = self._call("list", partial(self._client.list_objects_v2, **kwargs))
            for entry in listed.get("Contents", []):
                session_id, _, path = entry["Key"][len(self.PREFIX) :].partition("/")
                yield StoredObject(session_id, path, now - entry["LastModified"].timestamp())
            token = listed.get("NextContinuationToken")
            if not listed.get("IsTruncated") or not token:
                break

    def delete_key(self, session_id: str, path: str) -> None:
        self.delete(session_id, path)

    def _cache_files(self) -> Iterator[Path]:
        for file in self.cache.root.rglob("*"):
            if file.is_file() and ".incoming" not in file.parts and not file.name.endswith(".partial"):
                yield file

    def _cached(self, size: int) -> None:
        """Count ``size`` new bytes in the cache, evicting old files past the bound."""
        with self._cache_lock:
            self._cache_bytes += size
            if self.cache_max_bytes is None or self._cache_bytes <= self.cache_max_bytes:
                return
            files = []
            for file in self._cache_files():
                try:
                    stat = file.stat()
                except FileNotFoundError:
                    continue
                files.append((stat.st_mtime, stat.st_size, file))
            self._cache_bytes = sum(f[1] for f in files)
            keep_after = time.time() - EVICT_GRACE_S
            for mtime, size_, file in sorted(files, key=lambda f: f[0]):
                if self._cache_bytes <= self.cache_max_bytes or mtime > keep_after:
                    break
                file.unlink(missing_ok=True)
                self._cache_bytes -= size_

"""Real engines for the shared store's tests: a PostgreSQL 15 server and a moto S3 server.

Both run on 127.0.0.1 for the whole test session (fixtures ``postgres_server`` and
``s3_server``, registered in tests/conftest.py); each test gets a database of its own
(``CREATE DATABASE ... TEMPLATE``: cheap) and an empty object store (moto's reset). PostgreSQL
runs as ``nobody`` (initdb refuses root) from a temporary folder owned by it, with fsync off
(a test database need not survive a power cut); everything is stopped and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PG_BIN = Path(os.environ.get("IGPT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
S3_KEY = "testing"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throw-away PostgreSQL cluster in ``root`` on ``port`` (trust auth, user ``postgres``)."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip(
                f"PostgreSQL is not installed ({PG_BIN}/initdb missing): apt-get install postgresql "
                "(or set IGPT_TEST_PG_BIN to its bin folder)"
            )
        self.root = root
        self.data = root / "pg"
        self.port = port or free_port()
        root.mkdir(parents=True, exist_ok=True)
        shutil.chown(root, "nobody")
        os.chmod(root, 0o700)
        self._as_nobody(f"{PG_BIN}/initdb -D {self.data} -A trust -U postgres --no-sync -E UTF8")
        self.start()
        self._template = "igpt_template"
        self.admin(f"CREATE DATABASE {self._template}")

    def _as_nobody(self, command: str) -> None:
        done = subprocess.run(
            ["su", "-s", "/bin/bash", "nobody", "-c", command], capture_output=True, text=True, cwd=self.root
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command!r} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._as_nobody(f"{PG_BIN}/pg_ctl -D {self.data} -l {self.root}/log -o '{options}' -w start")

    def stop(self) -> None:
        self._as_nobody(f"{PG_BIN}/pg_ctl -D {self.data} -m fast -w stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        """A new, empty database; its name."""
        name = f"igpt_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {self._template}")
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """moto's S3 server (``ThreadedMotoServer``) on 127.0.0.1: the S3 protocol over HTTP."""

    def __init__(self, port: int | None = None) -> None:
        from moto.server import ThreadedMotoServer

        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.running = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget every bucket and object."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    def start(self) -> None:
        """Start again on the same port (moto keeps its buckets in this process)."""
        from moto.server import ThreadedMotoServer

        if not self.running:
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._server.start()
            self.running = True


class ApiProcess:
    """``python -m igpt_server`` on a free loopback port with ``env``."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "igpt_server", "--port", str(self.port), "--data-dir", str(data_dir)],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, deadline_s: float = 180, path: str = "/api/health") -> None:
        """Wait until ``path`` answers 200 (``/api/ready``: also the store and the warmed models)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def shared_env(pg: PostgresServer, s3: S3Server, database: str, bucket: str) -> dict[str, str]:
    """The environment that points ``Settings()`` at the shared store."""
    return {
        "IGPT_STORE__BACKEND": "shared",
        "IGPT_STORE__DATABASE_URL": pg.url(database),
        "IGPT_STORE__S3_ENDPOINT_URL": s3.url,
        "IGPT_STORE__S3_BUCKET": bucket,
        "IGPT_STORE__S3_ACCESS_KEY_ID": S3_KEY,
        "IGPT_STORE__S3_SECRET_ACCESS_KEY": S3_KEY,
    }


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the test session (skipped when PostgreSQL is not installed)."""
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="igpt-pg-")))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server for the test session."""
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_store_env(
    postgres_server: PostgresServer, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A fresh database and bucket; ``IGPT_STORE__*`` set so every ``Settings()`` uses them."""
    database = postgres_server.create_database()
    s3_server.reset()
    env = shared_env(postgres_server, s3_server, database, f"igpt-{uuid.uuid4().hex[:12]}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield env
    finally:
        postgres_server.drop_database(database)


def local_only(backend: str, why: str) -> None:
    """Skip a test on the shared store, saying why it is about the local disk."""
    if backend != "local":
        pytest.skip(f"local store only: {why}")

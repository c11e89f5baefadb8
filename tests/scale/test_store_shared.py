"""The shared store for real: two API processes on one PostgreSQL + S3, outages, downloads.

Each test gets its own PostgreSQL cluster and moto S3 server (module scope), because some
stop them; everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from igpt_server.store import ArtifactKind, sweep
from igpt_server.store import db as dbmod
from igpt_server.store.locks import PostgresSessionLocks
from tests.helpers import DATA, make_client, new_session, upload
from tests.shared_store import ApiProcess, PostgresServer, S3Server, shared_env


@pytest.fixture(scope="module")
def engines_of_this_module() -> Iterator[tuple[PostgresServer, S3Server]]:
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="igpt-pg-scale-")))
    s3 = S3Server()
    try:
        yield pg, s3
    finally:
        s3.stop()
        pg.close()


@pytest.fixture
def env(
    engines_of_this_module: tuple[PostgresServer, S3Server], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    pg, s3 = engines_of_this_module
    pg_running = True
    database = pg.create_database()
    values = shared_env(pg, s3, database, f"igpt-{uuid.uuid4().hex[:10]}")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    try:
        yield values
    finally:
        s3.start()
        try:
            pg.admin("SELECT 1")
        except Exception:
            pg_running = False
        if not pg_running:
            pg.start()
        pg.drop_database(database)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


# two API processes ----------------------------------------------------------------------


def test_two_api_processes_share_sessions_and_the_single_writer_rule(env: dict[str, str], tmp_path: Path) -> None:
    extra = {**env, "IGPT_WARM_UP": "false", "IGPT_SESSION_LOCK_TIMEOUT_S": "2"}
    first, second = ApiProcess(tmp_path / "a", extra), ApiProcess(tmp_path / "b", extra)
    try:
        first.wait_ready()
        second.wait_ready()
        a, b = httpx.Client(base_url=first.url, timeout=60), httpx.Client(base_url=second.url, timeout=60)
        sid = a.post("/api/sessions").json()["id"]
        photo = (DATA / "truck.jpg").read_bytes()
        made = a.post(f"/api/sessions/{sid}/files", files={"file": ("truck.jpg", photo)})
        assert made.status_code == 201, made.text
        path = made.json()["path"]
        state = b.get(f"/api/sessions/{sid}").json()
        assert state["active_image"] == path
        assert b.get(f"/api/sessions/{sid}/files/{path}").content == photo  # B never had it: from S3

        # a writer elsewhere (a third replica, here the test) holds the session: both wait, then 409
        engine = dbmod.postgres_engine(env["IGPT_STORE__DATABASE_URL"])
        locks = PostgresSessionLocks(engine)
        lease = locks.acquire(sid, 5, owner="a slow tool call on another replica")
        assert lease is not None
        try:
            started = time.monotonic()
            _error(b.put(f"/api/sessions/{sid}/active", json={"image": path}), 409, "session_busy")
            assert time.monotonic() - started >= 1.5, "it waited for the lock first"
            _error(a.post(f"/api/sessions/{sid}/files", files={"file": ("t.jpg", photo)}), 409, "session_busy")
            # a change that starts now waits, and goes through once the holder is done
            answers: list[httpx.Response] = []
            waiter = threading.Thread(
                target=lambda: answers.append(b.post(f"/api/sessions/{sid}/files", files={"file": ("t.jpg", photo)}))
            )
            waiter.start()
            time.sleep(0.5)
            assert answers == []
        finally:
            locks.release(lease)
        waiter.join(timeout=30)
        assert answers and answers[0].status_code == 201, answers and answers[0].text
        assert len(a.get(f"/api/sessions/{sid}").json()["artifacts"]) == 2
        assert a.delete(f"/api/sessions/{sid}").status_code == 204
        _error(b.get(f"/api/sessions/{sid}"), 404, "not_found")
        engine.dispose()
    finally:
        first.stop()
        second.stop()


# outages ----------------------------------------------------------------------------------


def test_postgresql_down_is_a_503_with_the_reason_and_recovery_after_restart(
    env: dict[str, str], engines_of_this_module: tuple[PostgresServer, S3Server], tmp_path: Path
) -> None:
    pg, _ = engines_of_this_module
    with make_client(tmp_path / "data") as client:
        sid = new_session(client)
        pg.stop()
        try:
            error = _error(client.post("/api/sessions"), 503, "store_unavailable")  # type: ignore[arg-type]
            assert error["detail"] == {"part": "database"} and "PostgreSQL" in error["message"]
            assert "IGPT_STORE__DATABASE_URL" in error["message"]
            _error(client.get(f"/api/sessions/{sid}"), 503, "store_unavailable")  # type: ignore[arg-type]
            _error(client.put(f"/api/sessions/{sid}/active", json={"image": None}), 503, "store_unavailable")  # type: ignore[arg-type]
            ready = client.get("/api/ready")
            assert ready.status_code == 503
            assert "PostgreSQL" in ready.json()["error"]["detail"]["store"]["detail"]
        finally:
            pg.start()
        assert client.get("/api/ready").status_code == 200
        assert client.get(f"/api/sessions/{sid}").status_code == 200
        upload(client, sid, "truck.jpg")


def test_s3_down_is_a_503_and_leaves_no_row_then_recovers(
    env: dict[str, str], engines_of_this_module: tuple[PostgresServer, S3Server], tmp_path: Path
) -> None:
    _, s3 = engines_of_this_module
    with make_client(tmp_path / "data") as client:
        sid = new_session(client)
        store = client.app.state.services.store  # type: ignore[attr-defined]
        s3.stop()
        try:
            with (DATA / "truck.jpg").open("rb") as fh:
                response = client.post(f"/api/sessions/{sid}/files", files={"file": ("truck.jpg", fh)})
            error = _error(response, 503, "store_unavailable")  # type: ignore[arg-type]
            assert error["detail"] == {"part": "object_store"} and env["IGPT_STORE__S3_BUCKET"] in error["message"]
            assert store.artifact_paths(sid) == set() and store.used_bytes() == 0, "no row without its object"
            assert not list((tmp_path / "data" / "sessions" / sid).rglob("*.jpg")), "nothing half-written"
            ready = client.get("/api/ready")
            assert ready.status_code == 503 and "object store" in ready.json()["error"]["detail"]["store"]["detail"]
        finally:
            s3.start()
        assert client.get("/api/ready").status_code == 200
        art = upload(client, sid, "truck.jpg")
        assert store.artifact_paths(sid) == {art["path"]}


def test_a_failed_row_insert_deletes_the_uploaded_object(env: dict[str, str], tmp_path: Path) -> None:
    """The insert fails for real (the session row is gone by then): the object goes too."""
    with make_client(tmp_path / "data") as client:
        store = client.app.state.services.store  # type: ignore[attr-defined]
        sid = new_session(client)
        blobs = store.blobs
        real_put = blobs.put

        def put_then_lose_the_session(session_id: str, path: str, content: Any) -> int:
            size = real_put(session_id, path, content)
            with store._transaction() as db:  # another replica deletes the session meanwhile
                from igpt_server.store.schema import sessions

                db.execute(sessions.delete().where(sessions.c.id == session_id))
            return int(size)

        blobs.put = put_then_lose_the_session
        try:
            with pytest.raises(Exception):  # noqa: B017 - a foreign-key violation of either driver
                store.add_artifact(sid, ArtifactKind.image, b"bytes", ext="png")
        finally:
            blobs.put = real_put
        assert [o for o in blobs.objects() if o.session_id == sid] == []


# downloads and the sweep ------------------------------------------------------------------


def test_downloads_stream_from_the_store_or_redirect_to_a_presigned_url(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = (DATA / "truck.jpg").read_bytes()
    with make_client(tmp_path / "a") as client:
        sid = new_session(client)
        path = upload(client, sid, "truck.jpg")["path"]
    with make_client(tmp_path / "b") as client:  # another replica: nothing cached
        response = client.get(f"/api/sessions/{sid}/files/{path}")
        assert response.status_code == 200 and response.content == photo
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["content-length"] == str(len(photo))
    monkeypatch.setenv("IGPT_STORE__DOWNLOADS", "redirect")
    with make_client(tmp_path / "c") as client:
        response = client.get(f"/api/sessions/{sid}/files/{path}", follow_redirects=False)
        assert response.status_code == 307
        url = response.headers["location"]
        assert url.startswith(env["IGPT_STORE__S3_ENDPOINT_URL"]) and "Signature" in url
        fetched = httpx.get(url)
        assert fetched.status_code == 200 and fetched.content == photo
        assert client.get(f"/api/sessions/{sid}/files/image/nothere_x.png", follow_redirects=False).status_code == 404


def test_the_startup_sweep_removes_orphan_objects_and_rows_without_objects(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_client(tmp_path / "data") as client:
        store = client.app.state.services.store  # type: ignore[attr-defined]
        sid = new_session(client)
        kept = upload(client, sid, "truck.jpg")["path"]
        lost = store.add_artifact(sid, ArtifactKind.image, b"gone", ext="png").path
        store.update_state(sid, active_image=lost)
        blobs = store.blobs
        blobs._client.delete_object(Bucket=blobs.bucket, Key=blobs.key(sid, lost))
        blobs.cache.delete(sid, lost)
        blobs._client.put_object(Bucket=blobs.bucket, Key=blobs.key(sid, "image/deadbeef_orphan.png"), Body=b"x")
        ghost = uuid.uuid4().hex
        blobs._client.put_object(Bucket=blobs.bucket, Key=blobs.key(ghost, "image/deadbeef_x.png"), Body=b"x")
        young = sweep.startup_sweep(store)
        assert young.orphan_files == [], "objects younger than the grace may be mid-upload elsewhere"
        assert young.missing_files == [f"{sid}/{lost}"]
        monkeypatch.setattr(sweep, "ORPHAN_GRACE_S", -1.0)
        report = sweep.startup_sweep(store)
        assert sorted(report.orphan_files) == sorted(
            [f"{sid}/image/deadbeef_orphan.png", f"{ghost}/image/deadbeef_x.png"]
        )
        assert {(o.session_id, o.path) for o in blobs.objects()} == {(sid, kept)}
        state = client.get(f"/api/sessions/{sid}").json()
        assert state["active_image"] is None and [a["path"] for a in state["artifacts"]] == [kept]


def test_the_cache_is_bounded_and_refills_from_the_store(env: dict[str, str], tmp_path: Path) -> None:
    from igpt_server.store.blobs import S3Blobs, S3Config

    config = S3Config(
        bucket=env["IGPT_STORE__S3_BUCKET"],
        endpoint_url=env["IGPT_STORE__S3_ENDPOINT_URL"],
        access_key_id="testing",
        secret_access_key="testing",
    )
    blobs = S3Blobs(config, tmp_path / "cache", cache_max_bytes=2500)
    sid = uuid.uuid4().hex
    for i in range(4):
        blobs.put(sid, f"image/{i:08x}_x.png", bytes(1000))
        file = blobs.cache.file(sid, f"image/{i:08x}_x.png")
        assert file is not None
        os.utime(file, (time.time() - 3600 + i, time.time() - 3600 + i))  # used an hour ago, in order
    blobs._cached(0)
    cached = sorted(p.name for p in (tmp_path / "cache" / sid / "image").iterdir())
    assert cached == ["00000002_x.png", "00000003_x.png"], "the least recently used went first"
    again = blobs.local_file(sid, "image/00000000_x.png")
    assert again is not None and again.read_bytes() == bytes(1000)
    assert blobs.local_file(sid, "image/ffffffff_none.png") is None

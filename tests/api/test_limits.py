"""Storage limits and clean-up: quotas, the free-disk watermark, a full disk, idle expiry,
the start-up sweep, and outputs that keep their input's family."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from igpt_server.store.limits import free_bytes
from tests.helpers import DATA, make_client, new_session, upload
from tests.shared_store import local_only

MiB = 1024 * 1024
BACKENDS = {"segment": "opencv", "remove": "opencv", "move": "opencv"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return dict(body["error"])


def post_file(client: TestClient, sid: str, name: str, **form: str) -> Any:
    with (DATA / name).open("rb") as fh:
        return client.post(f"/api/sessions/{sid}/files", files={"file": (name, fh)}, data=form)


def leftovers(data_dir: Path, sid: str) -> list[str]:
    """Files of the session folder that are not artifacts: partial uploads and writes."""
    folder = data_dir / "sessions" / sid
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and (".incoming" in p.parts or p.name.endswith(".partial"))
    )


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    mask = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


# quotas -------------------------------------------------------------------------------------


def test_the_session_quota_refuses_the_upload_that_passes_it(tmp_path: Path) -> None:
    size = (DATA / "truck.jpg").stat().st_size
    with make_client(tmp_path / "data", session_quota_bytes=size + size // 2) as client:
        sid = new_session(client)
        upload(client, sid, "truck.jpg")
        err = assert_error(post_file(client, sid, "truck.jpg"), 413, "quota_exceeded")
        assert "quota" in err["message"] and "new one" in err["message"]
        assert len(client.get(f"/api/sessions/{sid}").json()["artifacts"]) == 1
        assert leftovers(tmp_path / "data", sid) == []
        # another session has its own quota
        upload(client, new_session(client), "truck.jpg")


def test_a_quota_passed_in_the_middle_of_a_multipart_upload_leaves_nothing(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", session_quota_bytes=64 * 1024) as client:
        sid = new_session(client)
        assert_error(post_file(client, sid, "dog_on_bench.png"), 413, "quota_exceeded")  # 405 KB, 64 KB quota
        assert client.get(f"/api/sessions/{sid}").json()["artifacts"] == []
        assert leftovers(tmp_path / "data", sid) == []


def test_the_global_quota_is_a_507(tmp_path: Path) -> None:
    size = (DATA / "corgi.jpeg").stat().st_size
    with make_client(tmp_path / "data", global_quota_bytes=size * 2 + 10) as client:
        upload(client, new_session(client), "corgi.jpeg")
        upload(client, new_session(client), "corgi.jpeg")
        assert_error(post_file(client, new_session(client), "corgi.jpeg"), 507, "storage_full")


def test_under_the_free_disk_watermark_uploads_and_tool_outputs_are_507(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with make_client(data, backends=BACKENDS) as client:
        sid = new_session(client)
        image = upload(client, sid, "dog_on_bench.png")["path"]
        mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
        before = client.get(f"/api/sessions/{sid}").json()
    # the same data directory, now with a watermark above what is free
    with make_client(data, backends=BACKENDS, min_free_bytes=free_bytes(data) + 1024 * MiB) as client:
        assert_error(post_file(client, sid, "truck.jpg"), 507, "disk_full")
        body = {"session": sid, "args": {"image_path": image, "mask_path": mask}}
        assert_error(client.post("/api/tools/remove", json=body), 507, "disk_full")
        after = client.get(f"/api/sessions/{sid}").json()
        assert after["artifacts"] == before["artifacts"] and after["active_image"] == image
        assert leftovers(data, sid) == []
        ready = client.get("/api/ready")
        assert_error(ready, 503, "not_ready")
        assert ready.json()["error"]["detail"]["disk"]["ok"] is False


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs: a real file system that fills up (needs root; skipped where mount is refused)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_clean_507_and_leaves_nothing_half_written(tiny_disk: Path) -> None:
    data = tiny_disk / "data"
    with make_client(data, min_free_bytes=None) as client:
        sid = new_session(client)
        stored = 0
        for _ in range(20):  # 3 MiB fill up after a few 400 KB photos
            r = post_file(client, sid, "dog_on_bench.png")
            if r.status_code != 201:
                break
            stored += 1
        assert 1 <= stored < 20
        assert_error(r, 507, "disk_full")
        state = client.get(f"/api/sessions/{sid}").json()
        assert len(state["artifacts"]) == stored
        assert leftovers(data, sid) == []
        for artifact in state["artifacts"]:
            assert client.get(artifact["url"]).content == (DATA / "dog_on_bench.png").read_bytes()


# expiry and sweeps --------------------------------------------------------------------------


def test_a_request_for_an_idle_session_is_a_404_session_expired(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", session_idle_s=0.5, sweep_interval_s=3600) as client:
        sid = new_session(client)
        time.sleep(0.8)
        err = assert_error(client.get(f"/api/sessions/{sid}"), 404, "session_expired")
        assert "POST /api/sessions" in err["message"]
        assert not (tmp_path / "data" / "sessions" / sid).exists()


def test_the_sweeper_deletes_idle_sessions_with_their_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with make_client(data, session_idle_s=0.5, sweep_interval_s=0.2) as client:
        idle = new_session(client)
        upload(client, idle, "corgi.jpeg")
        deadline = time.monotonic() + 10
        while (data / "sessions" / idle).exists():
            assert time.monotonic() < deadline, "the sweeper did not delete the idle session"
            time.sleep(0.1)
        assert_error(client.get(f"/api/sessions/{idle}"), 404, "not_found")
        assert client.get("/api/ready").json()["checks"]["store"]["detail"] == "0 sessions"


def test_a_used_session_does_not_expire(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", session_idle_s=3600) as client:
        sid = new_session(client)
        assert client.get(f"/api/sessions/{sid}").status_code == 200


def test_the_startup_sweep_removes_orphans_and_rows_without_files(tmp_path: Path, store_backend: str) -> None:
    local_only(
        store_backend,
        "the artifact files it plants are the artifacts only in the local store; the shared store's sweep is "
        "tests/scale/test_store_shared.py::test_the_startup_sweep_removes_orphan_objects_and_rows_without_objects",
    )
    data = tmp_path / "data"
    with make_client(data) as client:
        sid = new_session(client)
        kept = upload(client, sid, "corgi.jpeg")["path"]
        lost = upload(client, sid, "truck.jpg")["path"]  # the active image
    folder = data / "sessions" / sid
    # what a kill -9 leaves: a file renamed but never registered, a half upload, a partial write
    (folder / "image" / "0badc0de_orphan.jpg").write_bytes(b"x" * 100)
    (folder / ".incoming").mkdir(exist_ok=True)
    (folder / ".incoming" / "deadbeef").write_bytes(b"x" * 100)
    (folder / "image" / ".1234abcd_x.png.partial").write_bytes(b"x")
    (data / "sessions" / ("f" * 32)).mkdir()  # a folder whose session row is gone
    (folder / lost).unlink()  # a row whose file is gone
    with make_client(data) as client:
        state = client.get(f"/api/sessions/{sid}").json()
        assert [a["path"] for a in state["artifacts"]] == [kept]
        assert state["active_image"] is None
        assert client.get(f"/api/sessions/{sid}/files/{kept}").status_code == 200
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [kept]
    assert not (data / "sessions" / ("f" * 32)).exists()


# outputs keep their family ------------------------------------------------------------------


def test_a_remove_on_a_jpeg_stores_a_jpeg_and_its_mask_stays_png(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", backends=BACKENDS) as client:
        sid = new_session(client)
        truck = upload(client, sid, "truck.jpg")
        mask_bytes = box_mask(truck["width"], truck["height"], (40, 40, 120, 110))
        r = client.post(
            f"/api/sessions/{sid}/files",
            files={"file": ("box.png", mask_bytes)},
            data={"kind": "mask", "parent": truck["path"]},
        )
        assert r.status_code == 201, r.text
        mask = r.json()
        assert mask["path"].endswith(".png")
        body = {"session": sid, "args": {"image_path": truck["path"], "mask_path": mask["path"]}}
        r = client.post("/api/tools/remove", json=body)
        assert r.status_code == 200, r.text
        (out,) = [a for a in r.json()["artifacts"] if a["kind"] == "image"]
        assert out["path"].endswith(".jpg")
        stored = client.get(out["url"]).content
        assert Image.open(io.BytesIO(stored)).format == "JPEG"
        # far smaller than the PNG it used to be, and still the same picture outside the hole
        assert out["size_bytes"] < 2 * truck["size_bytes"]
        before = np.asarray(Image.open(DATA / "truck.jpg").convert("RGB"), dtype=np.int16)
        after = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"), dtype=np.int16)
        outside = np.ones(before.shape[:2], bool)
        outside[30:120, 30:130] = False
        assert np.abs(before - after)[outside].mean() < 3.0


def test_a_remove_on_a_png_stays_png(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", backends=BACKENDS) as client:
        sid = new_session(client)
        image = upload(client, sid, "dog_on_bench.png")["path"]
        mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
        r = client.post("/api/tools/remove", json={"session": sid, "args": {"image_path": image, "mask_path": mask}})
        assert r.status_code == 200, r.text
        assert r.json()["artifacts"][0]["path"].endswith(".png")


def test_disk_free_helper_matches_the_file_system(tmp_path: Path) -> None:
    assert abs(free_bytes(tmp_path) - shutil.disk_usage(tmp_path).free) < 64 * MiB

"""The foundation API: health, tools, sessions, files, direct tool calls and bad input."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import DATA, make_client, new_session, upload


def assert_error(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_health_docs_and_tools(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["tools_total"] >= 1
    assert client.get("/docs").status_code == 200
    assert "/api/sessions/{session_id}/files" in client.get("/openapi.json").json()["paths"]
    tools = {t["name"]: t for t in client.get("/api/tools").json()}
    ocr = tools["ocr"]
    assert ocr["available"] and ocr["backend"] == "easyocr"
    assert "image_path" in ocr["args_schema"]["properties"]
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("name", ["truck.jpg", "dog_on_bench.png", "corgi.jpeg"])
def test_upload_and_read_back_byte_identical(client: TestClient, name: str) -> None:
    sid = new_session(client)
    art = upload(client, sid, name)
    image = Image.open(DATA / name)
    assert art["kind"] == "image" and (art["width"], art["height"]) == image.size
    assert art["path"].startswith("image/")
    body = client.get(art["url"])
    assert body.status_code == 200 and body.content == (DATA / name).read_bytes()
    session = client.get(f"/api/sessions/{sid}").json()
    assert session["active_image"] == art["path"]
    assert [a["path"] for a in session["artifacts"]] == [art["path"]]
    assert session["messages"][-1]["role"] == "event"


def test_audio_upload_is_an_audio_artifact(client: TestClient) -> None:
    sid = new_session(client)
    art = upload(client, sid, "jfk.flac")
    assert art["kind"] == "audio" and art["path"].endswith(".flac")
    assert 10 < art["meta"]["duration_s"] < 12
    assert client.get(f"/api/sessions/{sid}").json()["active_image"] is None


def test_mask_upload_becomes_the_selection(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image["path"])
    assert mask["kind"] == "mask" and mask["parent"] == image["path"]
    state = client.get(f"/api/sessions/{sid}").json()
    assert state["active_mask"] == mask["path"] and state["active_image"] == image["path"]
    stored = Image.open(io.BytesIO(client.get(mask["url"]).content))
    assert stored.mode == "L" and stored.size == (512, 512)


def test_mask_of_another_size_is_refused(client: TestClient) -> None:
    sid = new_session(client)
    image = upload(client, sid, "truck.jpg")
    with (DATA / "dog_on_bench_mask.png").open("rb") as fh:
        r = client.post(
            f"/api/sessions/{sid}/files",
            files={"file": ("m.png", fh)},
            data={"kind": "mask", "parent": image["path"]},
        )
    err = assert_error(r, 422, "mask_size_mismatch")
    assert "512x512" in err["message"] and "1800x1200" in err["message"]
    assert client.get(f"/api/sessions/{sid}").json()["active_mask"] is None


def test_delete_session(client: TestClient) -> None:
    sid = new_session(client)
    art = upload(client, sid, "dog.jpg")
    assert client.delete(f"/api/sessions/{sid}").status_code == 204
    assert_error(client.get(f"/api/sessions/{sid}"), 404, "not_found")
    assert_error(client.get(art["url"]), 404)


def test_a_second_app_on_the_same_data_dir_sees_the_session(tmp_path: Path) -> None:
    with make_client(tmp_path) as first:
        sid = new_session(first)
        art = upload(first, sid, "truck.jpg")
    with make_client(tmp_path) as second:
        assert second.get(f"/api/sessions/{sid}").json()["active_image"] == art["path"]
        assert second.get(art["url"]).content == (DATA / "truck.jpg").read_bytes()


def test_ocr_tool_reads_the_poster(client: TestClient) -> None:
    sid = new_session(client)
    art = upload(client, sid, "unwant_text.jpg")
    r = client.post("/api/tools/ocr", json={"session": sid, "args": {"image_path": art["path"]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "ELDEN RING" in body["data"]["text"].upper()
    assert body["backend"] == "easyocr" and body["artifacts"] == []
    words = body["data"]["words"]
    assert all(0 <= w["box"][0] < w["box"][2] <= 800 for w in words)
    history = client.get(f"/api/sessions/{sid}").json()["messages"]
    assert history[-1]["role"] == "tool" and history[-1]["data"]["tool"] == "ocr"


# bad input -------------------------------------------------------------------------------


def test_unknown_session_and_artifact_are_404(client: TestClient) -> None:
    assert_error(client.get("/api/sessions/" + "0" * 32), 404, "not_found")
    assert_error(client.get("/api/sessions/not-a-session"), 404)
    sid = new_session(client)
    assert_error(client.get(f"/api/sessions/{sid}/files/image/0123abcd_none.png"), 404)
    assert_error(client.post(f"/api/sessions/{'f' * 32}/files", files={"file": ("a.png", b"x")}), 404)


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "image/..%2f..%2f..%2figpt.sqlite3",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "..%5c..%5cigpt.sqlite3",
    ],
)
def test_traversal_paths_read_nothing(client: TestClient, path: str) -> None:
    sid = new_session(client)
    upload(client, sid, "dog.jpg")
    r = client.get(f"/api/sessions/{sid}/files/{path}")
    assert r.status_code in (400, 404), r.text
    assert b"root:" not in r.content and b"SQLite" not in r.content


def test_another_sessions_file_is_not_reachable(client: TestClient) -> None:
    a, b = new_session(client), new_session(client)
    art = upload(client, a, "dog.jpg")
    assert_error(client.get(f"/api/sessions/{b}/files/{art['path']}"), 404)
    r = client.post("/api/tools/ocr", json={"session": b, "args": {"image_path": art["path"]}})
    assert_error(r, 404)


def test_unknown_fields_are_422(client: TestClient) -> None:
    sid = new_session(client)
    art = upload(client, sid, "dog.jpg")
    r = client.post("/api/tools/ocr", json={"session": sid, "args": {"image_path": art["path"], "lang": "fr"}})
    err = assert_error(r, 422, "invalid_input")
    assert "lang" in err["message"]
    assert_error(client.post("/api/tools/ocr", json={"session": sid, "args": {}, "x": 1}), 422, "validation_error")


def test_tool_args_must_name_artifacts_of_the_right_kind(client: TestClient) -> None:
    sid = new_session(client)
    upload(client, sid, "dog.jpg")
    audio = upload(client, sid, "the_bench.mp3")
    r = client.post("/api/tools/ocr", json={"session": sid, "args": {"image_path": "/etc/passwd"}})
    assert_error(r, 422)
    r = client.post("/api/tools/ocr", json={"session": sid, "args": {"image_path": audio["path"]}})
    assert_error(r, 422)
    assert_error(client.post("/api/tools/nope", json={"session": sid, "args": {}}), 404)


def test_upload_over_the_byte_cap_is_413(tmp_path: Path) -> None:
    with make_client(tmp_path, max_upload_bytes=100_000) as client:
        sid = new_session(client)
        with (DATA / "truck.jpg").open("rb") as fh:
            r = client.post(f"/api/sessions/{sid}/files", files={"file": ("truck.jpg", fh)})
        assert_error(r, 413, "payload_too_large")

        def chunks():  # no Content-Length: the cap is enforced while streaming
            yield b"x" * 60_000
            yield b"x" * 60_000

        r = client.post(
            f"/api/sessions/{sid}/files",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=zzz"},
        )
        assert_error(r, 413, "payload_too_large")
        assert client.get(f"/api/sessions/{sid}").json()["artifacts"] == []


def test_image_over_the_pixel_cap_is_422(tmp_path: Path) -> None:
    with make_client(tmp_path, max_image_pixels=1_000_000) as client:
        sid = new_session(client)
        with (DATA / "truck.jpg").open("rb") as fh:
            r = client.post(f"/api/sessions/{sid}/files", files={"file": ("truck.jpg", fh)})
        err = assert_error(r, 422, "too_many_pixels")
        assert "IGPT_MAX_IMAGE_PIXELS" in err["message"]


@pytest.mark.parametrize(
    ("name", "content", "form"),
    [
        ("notes.txt", b"hello, this is text", {}),
        ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, {}),
        ("half.jpg", (DATA / "dog.jpg").read_bytes()[:3000], {"kind": "image"}),
        ("empty.wav", b"", {}),
        ("dog.jpg", (DATA / "dog.jpg").read_bytes(), {"kind": "audio"}),
    ],
)
def test_bytes_that_do_not_decode_are_415(client: TestClient, name: str, content: bytes, form: dict) -> None:
    sid = new_session(client)
    r = client.post(f"/api/sessions/{sid}/files", files={"file": (name, content)}, data=form)
    assert_error(r, 415, "unsupported_media")
    assert client.get(f"/api/sessions/{sid}").json()["artifacts"] == []


def test_upload_kind_must_be_known(client: TestClient) -> None:
    sid = new_session(client)
    r = client.post(f"/api/sessions/{sid}/files", files={"file": ("a.bin", b"abc")}, data={"kind": "document"})
    assert_error(r, 422, "validation_error")


# the probe of issue 16, re-run ----------------------------------------------------------------


def test_health_says_whether_a_key_is_needed_and_ready_checks_the_store(client: TestClient) -> None:
    assert client.get("/api/health").json()["auth"] == "none"
    ready = client.get("/api/ready").json()
    assert ready["ready"] is True and set(ready["checks"]) == {"store", "disk", "models", "serving"}


def test_health_says_what_the_start_up_warm_up_is_still_loading(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", warm_up=True) as client:

        def models() -> dict[str, str]:
            return {m["key"]: m["state"] for m in client.get("/api/models").json()}

        def done(loading: dict[str, str]) -> bool:
            busy = any(state in ("waiting", "loading") for state in loading.values())
            return models().get("ocr.easyocr") == "loaded" and "speech" in loading and not busy

        loading = client.get("/api/health").json()["loading"]
        assert isinstance(loading, dict)
        deadline = time.monotonic() + 300  # a bound on the wait, not a speed check
        while not done(loading):
            assert time.monotonic() < deadline, loading
            time.sleep(0.2)
            loading = client.get("/api/health").json()["loading"]
        assert loading["ocr"] == loading["segment"] == loading["speech"] == "ready"
        assert loading["llm"] in ("ready", "not needed")
        assert models()["edges.hed_bsds500"] == "loaded"


def test_refused_uploads_name_no_server_path(client: TestClient, tmp_path: Path) -> None:
    sid = new_session(client)
    for name, content in (("fake.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40), ("x.wav", b"RIFF....WAVEjunk")):
        r = client.post(f"/api/sessions/{sid}/files", files={"file": (name, content)})
        assert r.status_code == 415
        assert str(tmp_path) not in r.text and ".incoming" not in r.text and "/sessions/" not in r.text


def test_every_route_declares_its_errors_with_the_error_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            errors = {code: r for code, r in operation["responses"].items() if code[0] in "45"}
            assert "500" in errors, (method, path)
            if "{session_id}" in path:
                assert "404" in errors, (method, path)
            for code, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, code)


def test_the_gesture_union_requires_its_type_and_numbers_are_numbers(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("Click", "Box", "Stroke", "Drag"):
        assert "type" in schemas[name]["required"], name
    sid = new_session(client)
    upload(client, sid, "dog_on_bench.png")
    for gesture in (
        {"type": "stroke", "points": [[0.0, False]]},
        {"type": "stroke", "points": [["10", 20]]},
        {"points": [[10, 20]]},
        {"type": "click", "points": [{"x": 10, "y": 20, "label": True}]},
    ):
        r = client.post(f"/api/sessions/{sid}/gesture", json={"gesture": gesture, "intent": "sketch"})
        assert_error(r, 422, "validation_error")

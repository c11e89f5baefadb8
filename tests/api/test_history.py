"""History, undo and redo over HTTP: one pointer for the chat's "undo", the undo/redo
endpoints and the gestures; every record of the history in one typed shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import make_client, new_session, upload

BOX = {"type": "box", "x0": 140, "y0": 170, "x1": 400, "y1": 470}


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path / "data", llm={"provider": "none"}) as client:
        yield client


def active(client: TestClient, sid: str) -> tuple[str | None, str | None]:
    state = client.get(f"/api/sessions/{sid}").json()
    return state["active_image"], state["active_mask"]


def test_a_chat_turn_is_one_undo_step_and_redo_restores_it_exactly(plain: TestClient) -> None:
    sid = new_session(plain)
    image = upload(plain, sid, "dog_on_bench.png")["path"]
    turn = plain.post(f"/api/sessions/{sid}/chat", json={"message": "remove this", "gesture": BOX}).json()
    assert [s["tool"] for s in turn["steps"]] == ["segment", "remove"]  # two tool steps, one turn
    after_turn = active(plain, sid)
    assert after_turn[0] != image

    undone = plain.post(f"/api/sessions/{sid}/undo")
    assert undone.status_code == 200
    assert (undone.json()["active_image"], undone.json()["active_mask"]) == (image, None)

    redone = plain.post(f"/api/sessions/{sid}/redo").json()
    assert (redone["active_image"], redone["active_mask"]) == after_turn

    # the chat's undo moves the same pointer
    body = plain.post(f"/api/sessions/{sid}/chat", json={"message": "undo"}).json()
    assert [s["tool"] for s in body["steps"]] == ["undo"] and "image #1" in body["reply"]
    assert active(plain, sid) == (image, None)
    assert plain.post(f"/api/sessions/{sid}/redo").json()["active_image"] == after_turn[0]


def test_a_new_step_after_undo_clears_redo_and_nothing_left_is_a_409(plain: TestClient) -> None:
    sid = new_session(plain)
    upload(plain, sid, "dog_on_bench.png")
    assert plain.post(f"/api/sessions/{sid}/undo").json()["error"]["code"] == "nothing_to_undo"
    plain.post(f"/api/sessions/{sid}/gesture", json={"gesture": BOX, "intent": "select"})
    assert plain.post(f"/api/sessions/{sid}/undo").status_code == 200
    plain.post(f"/api/sessions/{sid}/chat", json={"message": "select this", "gesture": BOX})
    response = plain.post(f"/api/sessions/{sid}/redo")
    assert response.status_code == 409 and response.json()["error"]["code"] == "nothing_to_redo"
    assert active(plain, sid)[1] is not None  # the refused redo changed nothing


def test_the_history_is_paginated_and_typed(plain: TestClient) -> None:
    sid = new_session(plain)
    upload(plain, sid, "dog_on_bench.png")
    plain.post(f"/api/sessions/{sid}/chat", json={"message": "remove this", "gesture": BOX})
    plain.post(f"/api/sessions/{sid}/undo")
    whole = plain.get(f"/api/sessions/{sid}/history").json()
    kinds = [e["record"]["kind"] for e in whole["entries"] if e["record"] is not None]
    assert kinds == ["tool_step", "tool_step", "undo"]
    steps = [e["record"] for e in whole["entries"] if e["record"] and e["record"]["kind"] == "tool_step"]
    assert steps[0]["group"] == steps[1]["group"]  # one turn, one undo step
    assert {s["chosen_by"] for s in steps} == {"rules"} and steps[1]["before"]["active_image"]
    assert whole["can_undo"] is False and whole["can_redo"] is True
    page = plain.get(f"/api/sessions/{sid}/history", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == whole["total"] and [e["seq"] for e in page["entries"]] == [
        e["seq"] for e in whole["entries"][1:3]
    ]
    assert plain.get(f"/api/sessions/{sid}/history", params={"limit": 0}).status_code == 422


def test_undoing_a_rest_tool_call_brings_back_the_image_and_the_selection(plain: TestClient) -> None:
    sid = new_session(plain)
    image = upload(plain, sid, "dog_on_bench.png")["path"]
    plain.post(f"/api/sessions/{sid}/gesture", json={"gesture": BOX, "intent": "select"})
    selected = active(plain, sid)
    assert selected[0] == image and selected[1] is not None

    cropped = plain.post("/api/tools/crop", json={"session": sid, "args": {"image_path": image}})
    assert cropped.status_code == 200, cropped.text
    after_crop = active(plain, sid)
    assert after_crop[0] != image

    undone = plain.post(f"/api/sessions/{sid}/undo").json()
    assert (undone["active_image"], undone["active_mask"]) == selected  # the selection too, not null
    assert active(plain, sid) == selected
    redone = plain.post(f"/api/sessions/{sid}/redo").json()
    assert (redone["active_image"], redone["active_mask"]) == after_crop

    entries = plain.get(f"/api/sessions/{sid}/history").json()["entries"]
    rest = next(e["record"] for e in entries if e["record"] and e["record"]["kind"] == "tool_step")
    assert rest["source"] == "rest" and rest["before"] == {"active_image": selected[0], "active_mask": selected[1]}


def test_a_gesture_is_one_typed_undo_step_that_restores_the_previous_selection(plain: TestClient) -> None:
    sid = new_session(plain)
    image = upload(plain, sid, "dog_on_bench.png")["path"]
    plain.post(f"/api/sessions/{sid}/gesture", json={"gesture": BOX, "intent": "select"})
    first = active(plain, sid)
    click = {"type": "click", "points": [{"x": 250, "y": 270, "label": 1}]}  # on the dog
    assert plain.post(f"/api/sessions/{sid}/gesture", json={"gesture": click, "intent": "select"}).status_code == 200
    second = active(plain, sid)
    assert second[1] not in (None, first[1])

    undone = plain.post(f"/api/sessions/{sid}/undo").json()
    assert (undone["active_image"], undone["active_mask"]) == first  # the earlier selection, not none
    undone = plain.post(f"/api/sessions/{sid}/undo").json()
    assert (undone["active_image"], undone["active_mask"]) == (image, None)
    assert plain.post(f"/api/sessions/{sid}/redo").json()["active_mask"] == first[1]

    records = [e["record"] for e in plain.get(f"/api/sessions/{sid}/history").json()["entries"] if e["record"]]
    gestures = [r for r in records if r["kind"] == "gesture"]
    assert [(g["tool"], g["intent"], g["gesture"]["type"]) for g in gestures] == [
        ("segment", "select", "box"),
        ("segment", "select", "click"),
    ]
    assert gestures[1]["before"] == {"active_image": image, "active_mask": first[1]}
    assert gestures[0]["group"] != gestures[1]["group"] and "mask_path is mask/" in gestures[0]["observation"]

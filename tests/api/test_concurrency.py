"""One writer per session: the select-during-remove race, serialised and checked on a live server.

Before the fix, a select that finished while a remove ran on the same session left the
active mask belonging to the previous image (4 of 4 tries), a pair ``PUT /active`` refuses.
Now state-changing calls on one session run one after the other, and a result is applied
only if the active image is still the one it ran on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from igpt_server.settings import Settings
from igpt_server.store.locks import LocalSessionLocks, writer_identity
from tests.api.live_server import live_server
from tests.helpers import DATA

BACKENDS = {"segment": "opencv", "remove": "opencv", "move": "opencv"}
ON_THE_DOG = {"type": "click", "points": [{"x": 250, "y": 270, "label": 1}]}


def _upload(http: httpx.Client, sid: str, name: str, **form: str) -> dict[str, Any]:
    with (DATA / name).open("rb") as fh:
        r = http.post(f"/api/sessions/{sid}/files", files={"file": (name, fh)}, data=form)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _consistent(state: dict[str, Any]) -> None:
    """The active mask, if any, is a mask of the active image (what PUT /active enforces)."""
    if state["active_mask"] is not None:
        mask = next(a for a in state["artifacts"] if a["path"] == state["active_mask"])
        assert mask["parent"] == state["active_image"], state


#: the module's live server and the tests that read its data back share one store
ONE_STORE_PER_MODULE = True


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store_backend: str) -> Any:
    data = tmp_path_factory.mktemp("race") / "data"
    with live_server(Settings(data_dir=data, backends=BACKENDS)) as url:
        yield url, data


@pytest.mark.parametrize("select_names_the_image", [True, False], ids=["select-on-old-image", "select-on-active"])
def test_a_select_during_a_remove_never_pairs_a_mask_with_another_image(
    server: Any, select_names_the_image: bool
) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=300) as http:
        sid = http.post("/api/sessions").json()["id"]
        image = _upload(http, sid, "dog_on_bench.png")["path"]
        mask = _upload(http, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
        answers: dict[str, httpx.Response] = {}

        def remove() -> None:
            body = {"session": sid, "args": {"image_path": image, "mask_path": mask}}
            answers["remove"] = http.post("/api/tools/remove", json=body)

        def select() -> None:
            body: dict[str, Any] = {"gesture": ON_THE_DOG, "intent": "select"}
            if select_names_the_image:
                body["image"] = image
            answers["select"] = http.post(f"/api/sessions/{sid}/gesture", json=body)

        remover = threading.Thread(target=remove)
        remover.start()
        _wait_until_running(http, "remove")
        selector = threading.Thread(target=select)
        selector.start()
        remover.join()
        selector.join()

        assert answers["remove"].status_code == 200, answers["remove"].text
        assert answers["select"].status_code == 200, answers["select"].text
        removed = answers["remove"].json()["artifacts"][0]["path"]
        state = http.get(f"/api/sessions/{sid}").json()
        assert state["active_image"] == removed
        _consistent(state)
        selected = answers["select"].json()
        (new_mask,) = selected["artifacts"]
        if select_names_the_image:
            # it ran on the old image after the remove: kept, not applied, and it says so
            assert new_mask["parent"] == image
            assert selected["data"]["applied"] is False and "changed" in selected["text"]
            assert state["active_mask"] is None
            assert new_mask["path"] in {a["path"] for a in state["artifacts"]}
        else:
            # it waited for the remove, then selected on the new image
            assert new_mask["parent"] == removed and state["active_mask"] == new_mask["path"]
        # the pair is one PUT /active accepts, and it survives a restart (read back from disk)
        r = http.put(f"/api/sessions/{sid}/active", json={"image": state["active_image"], "mask": state["active_mask"]})
        assert r.status_code == 200, r.text


def test_the_state_read_back_after_a_restart_is_consistent(server: Any) -> None:
    _, data = server
    from tests.helpers import make_client

    with make_client(Path(data)) as client:
        states = [client.get(f"/api/sessions/{sid}").json() for sid in _session_ids(Path(data))]
    assert states
    for state in states:
        _consistent(state)


def _session_ids(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "sessions").iterdir() if p.is_dir())


def _wait_until_running(http: httpx.Client, tool: str) -> None:
    deadline = time.monotonic() + 60
    needle = f'igpt_tool_running{{tool="{tool}"}} 1.0'
    while needle not in http.get("/metrics").text:
        assert time.monotonic() < deadline, f"{tool} never started"
        time.sleep(0.02)


def test_the_writer_lock_is_reentrant_per_writer_and_exclusive_between_writers() -> None:
    locks = LocalSessionLocks()
    with writer_identity("request-a"):
        first = locks.acquire("s1", timeout=0)
        again = locks.acquire("s1", timeout=0)  # the same request, e.g. the runner inside a gesture
        assert first is not None and again is not None
    got: list[object] = []

    def other() -> None:
        with writer_identity("request-b"):
            got.append(locks.acquire("s1", timeout=0.2))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert got == [None]  # another request waits, then gives up
    assert locks.busy("s1")
    locks.release(again)
    locks.release(first)

    def after() -> None:
        with writer_identity("request-b"):
            lease = locks.acquire("s1", timeout=0.2)
            got.append(lease)
            assert lease is not None
            locks.release(lease)

    thread = threading.Thread(target=after)
    thread.start()
    thread.join()
    assert got[-1] is not None and not locks.busy("s1")

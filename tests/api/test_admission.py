"""Admission control: a bounded queue per tool, a fast 503 with Retry-After past it, queue
positions and stages reported as progress, and cancellation of queued work."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from igpt_server.admission import Gate
from igpt_server.errors import Busy
from igpt_server.models.pool import ModelPool
from igpt_server.settings import AdmissionSettings, Settings, ToolAdmission
from igpt_server.tooling.progress import Cancelled, Progress, tracking
from tests.api.live_server import live_server
from tests.helpers import DATA, make_client, new_session, upload

BACKENDS = {"segment": "opencv", "remove": "opencv", "move": "opencv"}


class Holder:
    """Holds one slot of a gate in a thread until released."""

    def __init__(self, gate: Gate) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.gate = gate
        self.thread.start()
        assert self.inside.wait(5)

    def _run(self) -> None:
        with self.gate.admit():
            self.inside.set()
            self.release.wait(10)

    def done(self) -> None:
        self.release.set()
        self.thread.join(5)


def test_past_its_queue_a_tool_refuses_at_once_with_retry_after() -> None:
    gate = Gate("remove", concurrency=1, queue=1)
    running = Holder(gate)
    events: list[Progress] = []
    admitted = threading.Event()

    def queued() -> None:
        with tracking(events.append), gate.admit():
            admitted.set()

    waiter = threading.Thread(target=queued)
    waiter.start()
    deadline = time.monotonic() + 5
    while gate.waiting == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(Busy) as refused, gate.admit():  # the third caller: no room in the queue
        pass
    assert refused.value.status == 503 and refused.value.code == "busy" and refused.value.retry_after >= 1
    assert refused.value.detail == {"tool": "remove", "running": 1, "waiting": 1}
    assert not admitted.is_set()
    running.done()
    waiter.join(5)
    assert admitted.is_set()
    assert [(e.stage, e.tool, e.position) for e in events] == [("queued", "remove", 1)]
    assert gate.running == 0 and gate.waiting == 0 and gate.rejected == 1


def test_queue_positions_count_down_in_order() -> None:
    gate = Gate("segment", concurrency=1, queue=3)
    running = Holder(gate)
    events: dict[str, list[int | None]] = {"a": [], "b": []}
    order: list[str] = []

    b_is_next = threading.Event()

    def note(name: str, event: Progress) -> None:
        events[name].append(event.position)
        if name == "b" and event.position == 1:
            b_is_next.set()

    def wait(name: str) -> None:
        with tracking(lambda e: note(name, e)), gate.admit():
            order.append(name)
            if name == "a":  # hold the slot until b has seen itself move up
                assert b_is_next.wait(5)

    first = threading.Thread(target=wait, args=("a",))
    first.start()
    while gate.waiting < 1:
        time.sleep(0.01)
    second = threading.Thread(target=wait, args=("b",))
    second.start()
    while gate.waiting < 2:
        time.sleep(0.01)
    running.done()
    first.join(5)
    second.join(5)
    assert order == ["a", "b"]
    assert events["a"] == [1] and events["b"] == [2, 1]


def test_a_cancelled_caller_leaves_the_queue() -> None:
    gate = Gate("inpaint", concurrency=1, queue=2)
    running = Holder(gate)
    cancel = threading.Event()
    outcome: list[Cancelled] = []

    def queued() -> None:
        try:
            with tracking(None, cancel), gate.admit():
                pass
        except Cancelled as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=queued)
    waiter.start()
    while gate.waiting == 0:
        time.sleep(0.01)
    cancel.set()
    waiter.join(5)
    assert len(outcome) == 1 and outcome[0].status == 499
    assert gate.waiting == 0
    running.done()


def test_per_tool_limits_come_from_the_settings() -> None:
    settings = AdmissionSettings(concurrency=2, queue=5, tools={"remove": ToolAdmission(concurrency=1, queue=0)})
    assert (settings.for_tool("ocr").concurrency, settings.for_tool("ocr").queue) == (2, 5)
    assert (settings.for_tool("remove").concurrency, settings.for_tool("remove").queue) == (1, 0)
    assert Settings(admission={"queue": 4}).admission.queue == 4  # type: ignore[arg-type]


def test_the_runner_reports_running_and_the_pool_reports_loading(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", backends=BACKENDS) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        sid = new_session(client)
        image = upload(client, sid, "dog_on_bench.png")["path"]
        events: list[Progress] = []
        click = {"type": "click", "points": [{"x": 250, "y": 270, "label": 1}]}
        with tracking(events.append):
            services.runner.call(sid, "segment", {"image_path": image, "gesture": click})
        assert ("running", "segment") in [(e.stage, e.tool) for e in events]
    pool = ModelPool(Settings(data_dir=tmp_path / "pool"))
    seen: list[Progress] = []
    with tracking(seen.append), pool.use("test.tiny", lambda device: {"weights": [1, 2]}, backend="test"):
        pass
    assert [(e.stage, e.model) for e in seen] == [("loading", "test.tiny")]
    with tracking(seen.append), pool.use("test.tiny", lambda device: {"weights": [1, 2]}, backend="test"):
        pass
    assert len(seen) == 1  # loaded once: no second "loading"


def test_over_http_a_full_queue_is_a_fast_503_while_the_admitted_call_runs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", backends=BACKENDS, admission={"queue": 0})  # type: ignore[arg-type]
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=300) as http:
        calls = []
        for _ in range(2):
            sid = http.post("/api/sessions").json()["id"]
            with (DATA / "dog_on_bench.png").open("rb") as fh:
                image = http.post(f"/api/sessions/{sid}/files", files={"file": ("d.png", fh)}).json()["path"]
            with (DATA / "dog_on_bench_mask.png").open("rb") as fh:
                form = {"kind": "mask", "parent": image}
                mask = http.post(f"/api/sessions/{sid}/files", files={"file": ("m.png", fh)}, data=form).json()["path"]
            calls.append({"session": sid, "args": {"image_path": image, "mask_path": mask}})
        first: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: first.update(r=http.post("/api/tools/remove", json=calls[0])))
        worker.start()
        deadline = time.monotonic() + 60
        while 'igpt_tool_running{tool="remove"} 1.0' not in http.get("/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        refused = http.post("/api/tools/remove", json=calls[1])
        still_running = worker.is_alive()
        worker.join()
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "busy" and int(refused.headers["retry-after"]) >= 1
        assert still_running  # the refusal did not wait for the admitted call
        assert first["r"].status_code == 200, first["r"].text
        assert http.get(f"/api/sessions/{calls[1]['session']}").json()["active_mask"] == calls[1]["args"]["mask_path"]
        assert 'igpt_admission_rejected_total{tool="remove"} 1.0' in http.get("/metrics").text


def test_a_chat_turn_whose_tool_queue_is_full_is_a_503_with_retry_after(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", backends=BACKENDS, admission={"queue": 0}, llm={"provider": "none"}) as client:
        sid = new_session(client)
        image = upload(client, sid, "dog_on_bench.png")["path"]
        upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)
        services = client.app.state.services  # type: ignore[attr-defined]
        holder = Holder(services.runner.admission.gate("remove"))
        try:
            refused = client.post(f"/api/sessions/{sid}/chat", json={"message": "remove it"})
        finally:
            holder.done()
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "busy" and int(refused.headers["retry-after"]) >= 1
        assert client.get(f"/api/sessions/{sid}").json()["active_image"] == image  # nothing half-done
        done = client.post(f"/api/sessions/{sid}/chat", json={"message": "remove it"})
        assert done.status_code == 200 and done.json()["steps"][-1]["tool"] == "remove", done.text

"""Observability: Prometheus metrics scraped and parsed, JSON logs with request and session ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from igpt_server import logs
from igpt_server.auth import hash_key
from tests.helpers import make_client, new_session, upload

BACKENDS = {"segment": "opencv", "remove": "opencv", "move": "opencv"}


def scrape(client: TestClient, **kwargs: object) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = client.get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items()))


def test_metrics_cover_requests_tools_queues_models_sessions_and_disk(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", backends=BACKENDS) as client:
        sid = new_session(client)
        image = upload(client, sid, "dog_on_bench.png")
        click = {"type": "click", "points": [{"x": 250, "y": 270, "label": 1}]}
        r = client.post(f"/api/sessions/{sid}/gesture", json={"gesture": click, "intent": "select"})
        assert r.status_code == 200, r.text
        client.get("/api/sessions/" + "0" * 32)  # a 404
        m = scrape(client)
        route = "/api/sessions/{session_id}"
        assert value(m, "igpt_request_seconds_count", route=route, method="GET", status="404") == 1
        assert value(m, "igpt_request_seconds_count", route="/api/sessions", method="POST", status="201") == 1
        assert value(m, "igpt_tool_seconds_count", tool="segment", backend="opencv", outcome="ok") == 1
        assert value(m, "igpt_queue_depth", tool="segment") == 0
        assert value(m, "igpt_tool_running", tool="segment") == 0
        assert value(m, "igpt_sessions_active") == 1
        state = client.get(f"/api/sessions/{sid}").json()
        assert value(m, "igpt_disk_used_bytes") == sum(a["size_bytes"] for a in state["artifacts"])
        assert value(m, "igpt_disk_used_bytes") >= image["size_bytes"]
        assert value(m, "igpt_disk_free_bytes") > 0
        models = client.get("/api/models").json()
        for model in models:
            assert value(m, "igpt_model_memory_bytes", model=model["key"]) == model["memory_bytes"]
            assert value(m, "igpt_model_evictions_total", model=model["key"]) == model["evictions"]
        # no raw paths or session ids as labels: the route template is the label
        assert not [labels for labels, _ in m["igpt_request_seconds_count"] if sid in labels.get("route", "")]


def test_metrics_need_a_key_when_auth_is_on_unless_made_public(tmp_path: Path) -> None:
    keys = {"prom": hash_key("igpt_prometheus")}
    with make_client(tmp_path / "a", api_keys=keys) as client:
        assert client.get("/metrics").status_code == 401
        scrape(client, headers={"Authorization": "Bearer igpt_prometheus"})
    with make_client(tmp_path / "b", api_keys=keys, metrics_public=True) as client:
        scrape(client)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """JSON logs written to a buffer; the previous logging is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    logs.configure("json", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_json_logs_carry_the_request_and_session_ids(tmp_path: Path, json_log: io.StringIO) -> None:
    with make_client(tmp_path / "data") as client:
        sid = new_session(client)
        r = client.get(f"/api/sessions/{sid}", headers={"X-Request-ID": "trace-7"})
        assert r.status_code == 200
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = [e for e in lines if e.get("logger") == "igpt_server.access" and e.get("request_id") == "trace-7"]
    assert access, lines
    (entry,) = access
    assert entry["session_id"] == sid and entry["status"] == 200 and entry["level"] == "INFO"
    assert entry["route"] == "/api/sessions/{session_id}" and entry["method"] == "GET"

"""Tool models on Ray Serve (issue #14): real deployments of the embedded segmenter (HED edges +
region hierarchy) and of EasyOCR on a local Ray, driven through the API.

One local Ray for the module (2 CPUs, no dashboard); the ``edges`` deployment has 2 replicas
of half a CPU, ``ocr`` one. At the end Serve and Ray are shut down.
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from igpt_server.models.ray_serving import RayModelPool, ReplicaStats
from igpt_server.perception import geometry
from tests.helpers import DATA, make_client, new_session, upload

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

ON_THE_DOG = {"type": "click", "points": [{"x": 250, "y": 270, "label": 1}]}
ON_THE_BENCH = {"type": "click", "points": [{"x": 80, "y": 330, "label": 1}]}
DEPLOYMENTS = {
    "edges": {"num_replicas": 2, "num_cpus": 0.5, "max_ongoing_requests": 2},
    "ocr": {"num_replicas": 1, "num_cpus": 0.5, "max_ongoing_requests": 2},
}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as temp:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, namespace="igpt")
        try:
            yield
        finally:
            if ray.is_initialized():
                serve.shutdown()
            ray.shutdown()


@pytest.fixture(scope="module")
def client(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = {"serving": "ray", "warm_up": False, "ray": {"deployments": DEPLOYMENTS}}
    with make_client(tmp_path_factory.mktemp("ray") / "data", **settings) as c:
        yield c


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("local") / "data", warm_up=False) as c:
        yield c


def pool_of(client: TestClient) -> RayModelPool:
    pool = client.app.state.services.pool  # type: ignore[attr-defined]
    assert isinstance(pool, RayModelPool)
    return pool


def settle(client: TestClient) -> None:
    """Wait for the upload's background jobs (the segmenter's precomputation)."""
    services = client.app.state.services  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while services.background.running() and time.monotonic() < deadline:
        time.sleep(0.05)


def select(client: TestClient, sid: str, gesture: dict[str, Any] = ON_THE_DOG) -> dict[str, Any]:
    response = client.post(f"/api/sessions/{sid}/gesture", json={"gesture": gesture, "intent": "select"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def mask_of(client: TestClient, body: dict[str, Any]) -> np.ndarray:
    (artifact,) = body["artifacts"]
    return np.asarray(Image.open(io.BytesIO(client.get(artifact["url"]).content)).convert("L")) > 127


def read(client: TestClient, sid: str, path: str) -> Any:
    return client.post("/api/tools/ocr", json={"session": sid, "args": {"image_path": path}})


def region_counts(pool: RayModelPool) -> tuple[int, int]:
    """(hits, misses) of the region cache summed over the live ``edges`` replicas."""
    stats = pool.replica_stats("edges")
    caches = [s.caches["regions"] for s in stats if "regions" in s.caches]
    return sum(c.hits for c in caches), sum(c.misses for c in caches)


def wait_for(pool: RayModelPool, family: str, check: Any, timeout: float = 30.0) -> list[ReplicaStats]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = pool.replica_stats(family)
        if check(stats):
            return stats
        time.sleep(0.05)
    raise AssertionError(f"replicas of {family} never reached the expected state: {pool.replica_stats(family)}")


def test_select_and_ocr_on_serve_answer_as_local_mode(client: TestClient, local: TestClient) -> None:
    answers = []
    for app in (client, local):
        sid = new_session(app)
        dog = upload(app, sid, "dog_on_bench.png")["path"]
        settle(app)
        mask = mask_of(app, select(app, sid))
        poster = upload(app, sid, "unwant_text.jpg")["path"]
        response = read(app, sid, poster)
        assert response.status_code == 200, response.text
        answers.append((dog, mask, response.json()["data"]))
    (_, on_serve, ocr_serve), (_, at_home, ocr_home) = answers

    assert geometry.iou(on_serve, at_home) > 0.999
    assert geometry.iou(on_serve, np.asarray(Image.open(DATA / "dog_on_bench_mask.png").convert("L")) > 127) > 0.5
    assert "ELDEN RING" in ocr_serve["text"].upper() and ocr_serve["text"] == ocr_home["text"]
    assert np.allclose([w["box"] for w in ocr_serve["words"]], [w["box"] for w in ocr_home["words"]])
    ready = client.get("/api/ready").json()
    assert ready["ready"] is True and ready["checks"]["serving"]["detail"].startswith("Ray Serve"), ready
    models = client.get("/api/models").json()
    assert {m["family"] for m in models if m["serving"] == "ray"} >= {"edges", "ocr"}
    assert all(m["replica"] for m in models if m["serving"] == "ray")


def test_gestures_on_one_image_hit_its_replica_and_not_without_affinity(client: TestClient) -> None:
    pool = pool_of(client)
    assert len(pool.replica_stats("edges")) == 2

    def hit_rate(images: int) -> float:
        before = region_counts(pool)
        for _ in range(images):
            sid = new_session(client)
            upload(client, sid, "dog_on_bench.png")  # the upload precomputes on one replica
            settle(client)
            select(client, sid)
            select(client, sid, ON_THE_BENCH)
        hits, misses = (after - first for after, first in zip(region_counts(pool), before, strict=True))
        assert hits + misses == 3 * images  # the precomputation and two gestures per image
        return hits / (2 * images)  # the gestures' share answered from the cache (precomputations miss)

    with_affinity = hit_rate(2)
    pool.settings.ray.affinity = False
    try:
        without = hit_rate(4)
    finally:
        pool.settings.ray.affinity = True

    assert with_affinity == 1.0
    assert without < with_affinity
    print(f"region cache hit rate of gestures: {with_affinity:.2f} with affinity, {without:.2f} without")


def test_another_api_replica_reuses_the_running_deployments_without_rolling_them(
    client: TestClient, tmp_path: Path
) -> None:
    from igpt_server.settings import Settings

    first = pool_of(client)
    first.handle("edges")
    before = {s.replica for s in wait_for(first, "edges", lambda stats: len(stats) == 2)}
    settings = Settings(data_dir=tmp_path, serving="ray", ray={"deployments": DEPLOYMENTS})  # type: ignore[arg-type]
    second = RayModelPool(settings)  # what a second API process builds at start-up

    second.handle("edges")

    time.sleep(1.0)  # a rolled deployment would have replaced its replicas by now
    assert {s.replica for s in second.replica_stats("edges")} == before


def test_a_replica_killed_mid_request_is_a_503_and_the_next_request_succeeds(client: TestClient) -> None:
    pool = pool_of(client)
    sid = new_session(client)
    poster = upload(client, sid, "unwant_text.jpg")["path"]
    (victim,) = wait_for(pool, "ocr", lambda stats: len(stats) == 1)
    answer: dict[str, Any] = {}

    def request() -> None:
        answer["response"] = read(client, sid, poster)

    worker = threading.Thread(target=request)
    worker.start()
    wait_for(pool, "ocr", lambda stats: any(s.ongoing > 0 for s in stats))
    ray.kill(ray.get_actor(victim.actor_name, namespace="serve"))
    worker.join(60)

    response = answer["response"]
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert "'ocr'" in error["message"] and "retry" in error["message"]
    again = read(client, sid, poster)
    assert again.status_code == 200, again.text
    assert "ELDEN RING" in again.json()["data"]["text"].upper()
    (restarted,) = wait_for(pool, "ocr", lambda stats: len(stats) == 1 and stats[0].replica != victim.replica)
    assert restarted.requests >= 1


def test_an_unreachable_cluster_names_the_address_setting(client: TestClient, tmp_path: Path) -> None:
    from igpt_server.models.serving import ServingUnavailable
    from igpt_server.settings import Settings

    ray.shutdown()  # connect() only joins a cluster when this process has none
    try:
        ready = client.get("/api/ready")  # the module's server lost its cluster
        assert ready.status_code == 503 and not ready.json()["error"]["detail"]["serving"]["ok"], ready.text
        assert not ray.is_initialized()  # the probe did not start a new local Ray
        with pytest.raises(ServingUnavailable, match="IGPT_RAY__ADDRESS"):
            RayModelPool(Settings(data_dir=tmp_path, serving="ray", ray={"address": "127.0.0.1:1"}))
    finally:
        ray.shutdown()

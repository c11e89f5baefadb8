"""Scale-out: the tool models on Ray Serve (issue #14).

Starts a local Ray (``--cpus``, default 2; no dashboard) and drives the server's own
:class:`~igpt_server.models.ray_serving.RayModelPool` with the real backends (the embedded hed
segmenter: HED edges + region hierarchy; EasyOCR), as the tools call them, from
``--clients`` threads at once (the API's admission control is left out: it would cap the
concurrency these measurements are about). Measurements, one function each:

* **select_rps** (:func:`select_throughput`): click selects (the dog on dog_on_bench.png)
  on ``--images`` images whose hierarchies were precomputed (as on upload), spread over the
  images, with 1 and with 2 replicas of ``edges`` (``num_cpus=1`` each, so each replica's
  torch and OpenCV get one thread). Image-affine routing is on: a select is answered by the
  replica that holds its image's hierarchy.
* **ocr_rps** (:func:`ocr_throughput`): whole-image reads of unwant_text.jpg (the backend's
  own per-artifact cache bypassed: every read a new artifact path) with 1 and 2 ``ocr``
  replicas.
* **cpu_parallelism** (:func:`cpu_parallelism`): how much faster two CPU-bound processes run
  than one on this machine, the ceiling of any speed-up from a second replica here.
* **hit_rate** (:func:`hit_rate`): per image, the upload's precomputation then two gestures
  (dog, bench), with and without image-affine routing, 2 ``edges`` replicas: the share of
  gestures answered from their replica's region cache (counted in the replicas) and the
  median gesture time of hits and misses.

* **store_overhead** (:func:`store_overhead`): the store's cost per request, in process
  (FastAPI's TestClient, no network, no model): create a session, upload a 512 px photo, read
  the session, download the photo, on the local store (SQLite + files) and on the shared one
  (PostgreSQL 15 with fsync on + moto's S3 server on loopback: S3's protocol, not MinIO's speed).
* **api_replicas** (:func:`api_replicas`): 1 and 2 API processes (``python -m igpt_server``,
  models in each process) on one shared store, clients spread over them round-robin: select
  and OCR requests per second through HTTP. Each process answers a select from its own
  region cache once it has seen the image (every image is touched on every process first).

Prints a table and writes the JSON (default ``bench/results/scale.json``)::

    python bench/scale.py --json bench/results/scale.json
    python bench/scale.py --only store,api     # parts: serve, store, api
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
DOG = {"type": "click", "points": [{"x": 250, "y": 270, "label": 1}]}
BENCH = {"type": "click", "points": [{"x": 80, "y": 330, "label": 1}]}


@dataclass
class Ctx:
    """The part of a tool context the backends use here: a session id, the pool, the settings,
    and images by artifact path (every path is one of the test photos)."""

    session_id: str
    pool: Any
    settings: Any
    images: dict[str, np.ndarray] = field(default_factory=dict)

    def read_image(self, path: str) -> np.ndarray:
        return self.images[path]


def _spin(_: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(40_000_000):
        total += i
    return time.perf_counter() - start


def cpu_parallelism() -> dict[str, float]:
    """The machine's ceiling for any replica speed-up: one CPU-bound process alone, then two at
    once; ``speedup`` is 2 x alone / together (2.0 on two free cores, 1.0 when they share one)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as processes:
        processes.map(_spin, [0, 1])  # both workers started and warm
        alone = min(processes.map(_spin, [0]))
        together = max(processes.map(_spin, [0, 1], chunksize=1))
    return {"alone_s": round(alone, 2), "two_at_once_s": round(together, 2), "speedup": round(2 * alone / together, 2)}


def make_pool(data_dir: Path, deployments: dict[str, Any], affinity: bool = True) -> Any:
    from igpt_server.models.ray_serving import RayModelPool
    from igpt_server.settings import Settings

    settings = Settings(
        data_dir=data_dir, serving="ray", warm_up=False, ray={"deployments": deployments, "affinity": affinity}
    )
    return RayModelPool(settings)


def drop(family: str) -> None:
    """Delete a family's deployment (frees its CPUs for the next measurement)."""
    from ray import serve

    from igpt_server.models.ray_serving import app_name

    serve.delete(app_name(family))


def timed_many(calls: list[Callable[[], Any]], clients: int) -> tuple[float, list[float]]:
    """Run ``calls`` from ``clients`` threads; (wall seconds, per-call seconds)."""

    def one(call: Callable[[], Any]) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as threads:
        times = list(threads.map(one, calls))
    return time.perf_counter() - start, times


def rate(wall: float, times: list[float]) -> dict[str, Any]:
    return {
        "requests": len(times),
        "rps": round(len(times) / wall, 2),
        "p50_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
    }


def select_throughput(data_dir: Path, replicas: int, images: int, requests: int, clients: int) -> dict[str, Any]:
    from igpt_server import media
    from igpt_server.perception.gestures import Click
    from igpt_tools.segment import HedSegmentBackend

    pool = make_pool(data_dir, {"edges": {"num_replicas": replicas, "num_cpus": 1, "max_ongoing_requests": 4}})
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    ctx = Ctx(f"rps{replicas}", pool, pool.settings)
    backend = HedSegmentBackend()
    paths = [f"image/{i}_dog.png" for i in range(images)]
    warm_start = time.perf_counter()
    timed_many([lambda p=p: backend.precompute(ctx, p, image) for p in paths], clients)  # type: ignore[misc]
    warm = time.perf_counter() - warm_start
    click = Click.model_validate(DOG)
    calls = [lambda p=paths[i % images]: backend.answer(ctx, p, image, click) for i in range(requests)]
    wall, times = timed_many(calls, clients)  # type: ignore[arg-type]
    drop("edges")
    return {"replicas": replicas, "images": images, "precompute_s": round(warm, 2), **rate(wall, times)}


def ocr_throughput(data_dir: Path, replicas: int, requests: int, clients: int) -> dict[str, Any]:
    from igpt_server import media
    from igpt_tools.ocr import EasyOcrBackend

    pool = make_pool(data_dir, {"ocr": {"num_replicas": replicas, "num_cpus": 1, "max_ongoing_requests": 4}})
    image = media.read_image_rgb(DATA / "unwant_text.jpg")
    ctx = Ctx(f"ocr{replicas}", pool, pool.settings)
    backend = EasyOcrBackend()
    ctx.images = {f"image/warm{i}.jpg": image for i in range(replicas * 2)}
    timed_many([lambda p=p: backend.read(ctx, p) for p in ctx.images], clients)  # type: ignore[misc]
    paths = [f"image/{i}_poster.jpg" for i in range(requests)]
    ctx.images.update({p: image for p in paths})
    wall, times = timed_many([lambda p=p: backend.read(ctx, p) for p in paths], clients)  # type: ignore[misc]
    text = " ".join(w.text for w in backend.read(ctx, paths[0]))
    drop("ocr")
    return {"replicas": replicas, "text": text, **rate(wall, times)}


def hit_rate(data_dir: Path, affinity: bool, images: int) -> dict[str, Any]:
    from igpt_server import media
    from igpt_server.perception.gestures import Click
    from igpt_tools.segment import HedSegmentBackend

    pool = make_pool(data_dir, {"edges": {"num_replicas": 2, "num_cpus": 1, "max_ongoing_requests": 4}}, affinity)
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    ctx = Ctx(f"hits{affinity}", pool, pool.settings)
    backend = HedSegmentBackend()
    hit_times: list[float] = []
    miss_times: list[float] = []
    for i in range(images):
        path = f"image/{i}_dog.png"
        backend.precompute(ctx, path, image)
        for gesture in (DOG, BENCH):
            start = time.perf_counter()
            answer = backend.answer(ctx, path, image, Click.model_validate(gesture))
            (hit_times if answer.precomputed else miss_times).append(time.perf_counter() - start)
    counted = _replica_counts(pool)
    drop("edges")
    gestures = len(hit_times) + len(miss_times)
    return {
        "affinity": affinity,
        "images": images,
        "gestures": gestures,
        "hit_rate": round(len(hit_times) / gestures, 3),
        "hit_p50_s": round(statistics.median(hit_times), 3) if hit_times else None,
        "miss_p50_s": round(statistics.median(miss_times), 3) if miss_times else None,
        "replica_counts": counted,
    }


def _replica_counts(pool: Any) -> list[dict[str, Any]]:
    """Per replica: requests and region-cache hits/misses (precomputations included)."""
    deadline = time.monotonic() + 5
    stats = pool.replica_stats("edges")
    while time.monotonic() < deadline and len(stats) < 2:
        time.sleep(0.1)
        stats = pool.replica_stats("edges")
    return [
        {
            "replica": s.replica,
            "requests": s.requests,
            **(s.caches["regions"].model_dump() if "regions" in s.caches else {}),
        }
        for s in stats
    ]


# --- the store and API replicas ---------------------------------------------------------


def _engines(root: Path) -> tuple[Any, Any]:
    """A PostgreSQL 15 with production durability (fsync on) and moto's S3 server, on loopback."""
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.shared_store import PG_BIN, PostgresServer, S3Server

    class DurablePostgres(PostgresServer):
        def start(self) -> None:
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300"
            self._as_nobody(f"{PG_BIN}/pg_ctl -D {self.data} -l {self.root}/log -o '{options}' -w start")

    # a folder of its own (the server runs as nobody, who cannot enter the caller's temp folder)
    return DurablePostgres(Path(tempfile.mkdtemp(prefix="igpt-bench-pg-"))), S3Server()


def _shared_env(pg: Any, s3: Any) -> dict[str, str]:
    from tests.shared_store import shared_env

    return shared_env(pg, s3, pg.create_database(), f"bench-{os.getpid()}")


def store_overhead(root: Path, pg: Any, s3: Any, repeats: int) -> list[dict[str, Any]]:
    """Median milliseconds per request kind, local store then shared store."""
    from fastapi.testclient import TestClient

    from igpt_server.app import create_app
    from igpt_server.settings import Settings

    photo = (DATA / "dog_on_bench.png").read_bytes()
    rows = []
    for backend in ("local", "shared"):
        env = _shared_env(pg, s3) if backend == "shared" else {}
        os.environ.update(env)
        try:
            settings = Settings(data_dir=root / f"store-{backend}", warm_up=False, vision={"caption_uploads": False})  # type: ignore[arg-type]
        finally:
            for name in env:
                os.environ.pop(name)
        times: dict[str, list[float]] = {"create": [], "upload": [], "read": [], "download": []}
        with TestClient(create_app(settings)) as client:
            for _ in range(repeats + 2):  # the first two warm the connections and caches
                start = time.perf_counter()
                sid = client.post("/api/sessions").json()["id"]
                created = time.perf_counter()
                art = client.post(f"/api/sessions/{sid}/files", files={"file": ("d.png", photo)}).json()
                uploaded = time.perf_counter()
                client.get(f"/api/sessions/{sid}").raise_for_status()
                read = time.perf_counter()
                client.get(art["url"]).raise_for_status()
                done = time.perf_counter()
                step_times = (created - start, uploaded - created, read - uploaded, done - read)
                for kind, span in zip(times, step_times, strict=True):
                    times[kind].append(span)
        row: dict[str, Any] = {"store": backend, "repeats": repeats}
        for kind, spans in times.items():
            row[f"{kind}_ms"] = round(1000 * statistics.median(spans[2:]), 1)
        rows.append(row)
    return rows


def api_replicas(
    root: Path, pg: Any, s3: Any, replicas: int, images: int, selects: int, reads: int, clients: int
) -> dict[str, Any]:
    """Select and OCR requests per second through ``replicas`` API processes on one shared store.

    Every OCR read is of a poster uploaded for it alone (the OCR backend caches reads per
    artifact), and every process has answered a select on every image before the timing.
    """
    import httpx

    env = _shared_env(pg, s3)
    folder = root / f"api{replicas}"
    folder.mkdir(parents=True, exist_ok=True)
    from tests.shared_store import ApiProcess

    # a queue long enough for every client (the default of 1 waiting call per tool answers the
    # rest with a fast 503: admission control, measured in bench/load.py, not here)
    quiet = {**env, "IGPT_VISION__CAPTION_UPLOADS": "false", "IGPT_ADMISSION__QUEUE": "64"}
    processes = [ApiProcess(folder / f"data-{i}", quiet) for i in range(replicas)]
    try:
        for process in processes:
            process.wait_ready(300, path="/api/ready")
        urls = [p.url for p in processes]
        with httpx.Client(timeout=600) as http:

            def upload(url: str, sid: str, name: str) -> str:
                with (DATA / name).open("rb") as fh:
                    response = http.post(f"{url}/api/sessions/{sid}/files", files={"file": (name, fh)})
                response.raise_for_status()
                return str(response.json()["path"])

            sessions = [http.post(f"{urls[i % replicas]}/api/sessions").json()["id"] for i in range(images)]
            for i, sid in enumerate(sessions):
                upload(urls[i % replicas], sid, "dog_on_bench.png")
            posters = [
                (sessions[k % images], upload(urls[0], sessions[k % images], "unwant_text.jpg"))
                for k in range(reads + replicas)
            ]

            def select(k: int) -> Callable[[], Any]:
                sid, url = sessions[k % images], urls[k % replicas]

                def call() -> None:
                    body = {"gesture": DOG, "intent": "select"}
                    http.post(f"{url}/api/sessions/{sid}/gesture", json=body).raise_for_status()

                return call

            def read(k: int) -> Callable[[], Any]:
                (sid, poster), url = posters[k], urls[k % replicas]

                def call() -> None:
                    body = {"session": sid, "args": {"image_path": poster}}
                    http.post(f"{url}/api/tools/ocr", json=body).raise_for_status()

                return call

            for k in range(images * replicas):  # each process computes each image's hierarchy once
                select(k)()
            wall, times = timed_many([select(k) for k in range(selects)], clients)
            select_row = rate(wall, times)
            for k in range(replicas):  # each process loads EasyOCR
                read(reads + k)()
            wall, times = timed_many([read(k) for k in range(reads)], clients)
            ocr_row = rate(wall, times)
    finally:
        for process in processes:
            process.stop()
    return {"replicas": replicas, "select": select_row, "ocr": ocr_row}


def table(results: dict[str, Any]) -> str:
    cpu = results["cpu_parallelism"]
    lines = [
        f"two CPU-bound processes at once run {cpu['speedup']}x as fast as one (the ceiling of a replica speed-up)",
        "",
        "measurement            replicas  requests   rps    p50 s   max s",
    ]
    for name in ("select_rps", "ocr_rps"):
        for row in results[name]:
            cells = f"{row['replicas']:>8} {row['requests']:>9} {row['rps']:>6} {row['p50_s']:>8} {row['max_s']:>7}"
            lines.append(f"{name:<22} {cells}")
    lines.append("")
    lines.append("routing     gestures  hit rate  hit p50 s  miss p50 s")
    for row in results["hit_rate"]:
        label = "affine" if row["affinity"] else "random"
        lines.append(
            f"{label:<11} {row['gestures']:>8} {row['hit_rate']:>9} {row['hit_p50_s']!s:>10} {row['miss_p50_s']!s:>11}"
        )
    return "\n".join(lines)


def store_table(results: dict[str, Any]) -> str:
    lines = ["store    create ms  upload ms  read ms  download ms  (median, in process)"]
    for row in results["store_overhead"]:
        lines.append(
            f"{row['store']:<8} {row['create_ms']:>9} {row['upload_ms']:>10} "
            f"{row['read_ms']:>8} {row['download_ms']:>12}"
        )
    return "\n".join(lines)


def api_table(results: dict[str, Any]) -> str:
    lines = ["API processes  select rps  select p50 s  OCR rps  OCR p50 s"]
    for row in results["api_replicas"]:
        sel, ocr = row["select"], row["ocr"]
        lines.append(f"{row['replicas']:>13} {sel['rps']:>11} {sel['p50_s']:>13} {ocr['rps']:>8} {ocr['p50_s']:>10}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--clients", type=int, default=4, help="concurrent callers")
    parser.add_argument("--images", type=int, default=4, help="images of the select and hit-rate runs")
    parser.add_argument("--selects", type=int, default=40, help="selects per throughput run")
    parser.add_argument("--reads", type=int, default=8, help="OCR reads per throughput run")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--only", default="serve,store,api", help="parts to run: serve, store, api")
    parser.add_argument("--repeats", type=int, default=40, help="requests per kind of the store overhead")
    args = parser.parse_args()
    parts = set(args.only.split(","))

    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "ray_cpus": args.cpus, "clients": args.clients}
    results["cpu_parallelism"] = cpu_parallelism()
    if "serve" in parts:
        import ray
        from ray import serve

        with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as temp:
            ray.init(num_cpus=args.cpus, include_dashboard=False, _temp_dir=temp, namespace="igpt", log_to_driver=False)
            try:
                data_dir = Path(temp) / "data"
                results["select_rps"] = [
                    select_throughput(data_dir, n, args.images, args.selects, args.clients) for n in (1, 2)
                ]
                results["ocr_rps"] = [ocr_throughput(data_dir, n, args.reads, args.clients) for n in (1, 2)]
                results["hit_rate"] = [hit_rate(data_dir, affinity, args.images) for affinity in (True, False)]
            finally:
                serve.shutdown()
                ray.shutdown()
        print(table(results))
    if parts & {"store", "api"}:
        with tempfile.TemporaryDirectory(prefix="igpt-scale-") as temp:
            root = Path(temp)
            pg, s3 = _engines(root)
            try:
                if "store" in parts:
                    results["store_overhead"] = store_overhead(root, pg, s3, args.repeats)
                    print(store_table(results))
                if "api" in parts:
                    results["api_replicas"] = [
                        api_replicas(root, pg, s3, n, args.images, args.selects, args.reads, args.clients)
                        for n in (1, 2)
                    ]
                    print(api_table(results))
            finally:
                s3.stop()
                pg.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

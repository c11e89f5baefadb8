"""Load on a loopback server: concurrent sessions through admission control, and a soak.

Starts ``igpt-server`` (embedded tier, opencv backends, no LLM: the auxiliary control routes
"remove it") on 127.0.0.1 with a fresh data directory, then:

* **concurrency**: for each N in ``--users`` (default 1 5 20), N sessions at once, each doing
  upload (a 256x256 crop of dog_on_bench.png), select (a click on the dog), remove (the
  ``remove`` tool on a box mask) and chat ("remove it" after a click). Per route: p50/p95 of
  the admitted (2xx) answers, p95 of the refusals (503 busy, 429, 409), the refusal rate,
  throughput; the server's RSS and the data directory's growth.
* **soak**: ``--soak`` sequential edits on one session (remove of a small box, alternating
  places), with the server's RSS and the disk every 10 edits, and the size of one page of
  ``GET /api/sessions/{id}/history`` (paginated, so bounded whatever the history's length).

Admission control is the server's default (per tool: 1 running, 1 waiting). Goal: the p95 of
admitted requests within about 2x the single-user time; every refusal a fast 503 or 429.

    python bench/load.py --users 1 5 20 --soak 300 --json bench/results/load.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CLICK = {"type": "click", "points": [{"x": 120, "y": 130, "label": 1}]}


def crop_png(size: int = 256) -> bytes:
    """A ``size`` x ``size`` crop of dog_on_bench.png around the dog (PNG bytes)."""
    image = Image.open(DATA / "dog_on_bench.png").convert("RGB")
    buffer = io.BytesIO()
    image.crop((130, 140, 130 + size, 140 + size)).save(buffer, format="PNG")
    return buffer.getvalue()


def box_mask(size: int, box: tuple[int, int, int, int]) -> bytes:
    mask = np.zeros((size, size), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def disk_mib(self) -> float:
        return sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file()) / (1024 * 1024)


def start_server(data_dir: Path) -> Server:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "IGPT_BACKENDS": "segment=opencv,remove=opencv,move=opencv",
        "IGPT_LLM__PROVIDER": "none",
        "IGPT_VISION__CAPTION_UPLOADS": "false",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "igpt_server.cli", "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/ready", timeout=2).status_code == 200:
                return Server(url, process, data_dir)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not become ready")


@dataclass
class Record:
    route: str
    status: int
    seconds: float


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, route: str, call: Any) -> httpx.Response:
        started = time.perf_counter()
        response: httpx.Response = call()
        with self.lock:
            self.records.append(Record(route, response.status_code, time.perf_counter() - started))
        return response


def one_user(http: httpx.Client, run: Run, image: bytes, mask: bytes) -> None:
    sid = run.timed("create", lambda: http.post("/api/sessions")).json()["id"]
    r = run.timed("upload", lambda: http.post(f"/api/sessions/{sid}/files", files={"file": ("dog.png", image)}))
    if r.status_code != 201:
        return
    path = r.json()["path"]
    run.timed("select", lambda: http.post(f"/api/sessions/{sid}/gesture", json={"gesture": CLICK, "intent": "select"}))
    m = http.post(f"/api/sessions/{sid}/files", files={"file": ("m.png", mask)}, data={"kind": "mask", "parent": path})
    if m.status_code == 201:
        args = {"image_path": path, "mask_path": m.json()["path"]}
        run.timed("remove", lambda: http.post("/api/tools/remove", json={"session": sid, "args": args}))
    body = {"message": "remove it", "gesture": CLICK}
    run.timed("chat", lambda: http.post(f"/api/sessions/{sid}/chat", json=body))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


def summarise(run: Run, wall: float) -> dict[str, Any]:
    by_route: dict[str, list[Record]] = defaultdict(list)
    for record in run.records:
        by_route[record.route].append(record)
    routes = {}
    for route, records in by_route.items():
        ok = [r.seconds for r in records if 200 <= r.status < 300]
        refused = [r for r in records if r.status in (409, 429, 503)]
        routes[route] = {
            "n": len(records),
            "ok": len(ok),
            "p50_s": percentile(ok, 50),
            "p95_s": percentile(ok, 95),
            "refused": len(refused),
            "refused_by_status": {
                str(s): sum(r.status == s for r in refused) for s in sorted({r.status for r in refused})
            },
            "refusal_p95_s": percentile([r.seconds for r in refused], 95),
            "other_errors": sorted({r.status for r in records if r.status >= 400 and r.status not in (409, 429, 503)}),
        }
    return {"wall_s": wall, "requests_per_s": len(run.records) / wall if wall else None, "routes": routes}


def concurrency(server: Server, users: int, image: bytes, mask: bytes) -> dict[str, Any]:
    run = Run()
    rss0, disk0 = server.rss_mib(), server.disk_mib()
    with httpx.Client(base_url=server.url, timeout=600) as http:
        threads = [threading.Thread(target=one_user, args=(http, run, image, mask)) for _ in range(users)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    result = summarise(run, wall)
    result.update(users=users, rss_mib=(rss0, server.rss_mib()), disk_growth_mib=server.disk_mib() - disk0)
    return result


def soak(server: Server, edits: int, image: bytes) -> dict[str, Any]:
    samples = []
    times = []
    with httpx.Client(base_url=server.url, timeout=600) as http:
        sid = http.post("/api/sessions").json()["id"]
        path = http.post(f"/api/sessions/{sid}/files", files={"file": ("dog.png", image)}).json()["path"]
        for i in range(edits):
            x = 20 + (i % 5) * 40
            mask = http.post(
                f"/api/sessions/{sid}/files",
                files={"file": ("m.png", box_mask(256, (x, 20, x + 24, 44)))},
                data={"kind": "mask", "parent": path},
            )
            mask.raise_for_status()
            started = time.perf_counter()
            r = http.post(
                "/api/tools/remove",
                json={"session": sid, "args": {"image_path": path, "mask_path": mask.json()["path"]}},
            )
            times.append(time.perf_counter() - started)
            r.raise_for_status()
            path = next(a["path"] for a in r.json()["artifacts"] if a["kind"] == "image")
            if (i + 1) % 10 == 0 or i == 0:
                page = http.get(f"/api/sessions/{sid}/history", params={"limit": 50})
                samples.append(
                    {
                        "edits": i + 1,
                        "rss_mib": round(server.rss_mib(), 1),
                        "disk_mib": round(server.disk_mib(), 2),
                        "history_page_bytes": len(page.content) if page.status_code == 200 else None,
                        "session_json_bytes": len(http.get(f"/api/sessions/{sid}").content),
                    }
                )
    return {
        "edits": edits,
        "remove_p50_s": statistics.median(times),
        "remove_p95_s": percentile(times, 95),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--soak", type=int, default=300, help="sequential edits on one session (0: skip)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    image, mask = crop_png(), box_mask(256, (90, 90, 150, 150))
    data_dir = Path(tempfile.mkdtemp(prefix="igpt-load-")) / "data"
    server = start_server(data_dir)
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "image": "256x256 PNG crop of dog_on_bench.png"}
    try:
        results["concurrency"] = [concurrency(server, n, image, mask) for n in args.users]
        if args.soak:
            results["soak"] = soak(server, args.soak, image)
    finally:
        server.process.terminate()
        server.process.wait(30)
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Quality, speed and memory of the embedded segmenter (learned HED edges + region hierarchy),
with the old GrabCut search as the baseline column.

For each photo with a reference mask, clicks, a box and a brush stroke (written out below, in
image pixels, as a person would give them) are answered by the ``hed`` segment backend (the
per-image edges and regions computed first, as on upload) and by the ``opencv`` GrabCut search
(:func:`igpt_tools.segment.grabcut_segment`, the previous embedded backend). The script prints
the IoU of each with the reference, the per-gesture time, the per-image precomputation time,
the first-click time when nothing was precomputed, the cache's size per image and the
process's RSS with 20 images embedded, and writes everything as JSON (``--json``).

Photos are split into the ones the hierarchy's rules were tuned on (``tuned``) and the ones
added and measured only afterwards (``held-out``); the means are reported per split.

References (bench/data/README.md says how each was made): ``dog_on_bench_mask.png`` ships
with the photo (a loose inpainting mask about 8 px wider than the dog, so its rows also show
the IoU of our mask grown by 8 px); every other reference is a polygon drawn by hand in
``bench/data/reference_polygons.json``.

Run: ``.venv/bin/python bench/segment_quality.py [--no-baseline] [--fill] [--overlays DIR] [--json FILE]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igpt_server import media  # noqa: E402
from igpt_server.models.pool import ModelPool  # noqa: E402
from igpt_server.perception import geometry  # noqa: E402
from igpt_server.perception.gestures import Box, Click, ClickPoint, Stroke  # noqa: E402
from igpt_tools import edges  # noqa: E402
from igpt_tools.regions import RegionCache  # noqa: E402
from igpt_tools.segment import HedSegmentBackend, grabcut_segment  # noqa: E402

DATA = ROOT / "tests" / "data"
POLYGONS = ROOT / "bench" / "data" / "reference_polygons.json"
Gesture = Click | Box | Stroke


@dataclass(frozen=True)
class Case:
    """One object of one photo: its reference (``key`` in the polygons file), the gestures
    pointing at it, and whether the hierarchy's rules were tuned on this photo."""

    key: str
    image: Path
    gestures: list[tuple[str, str, Gesture]]
    tuned: bool
    #: the reference is this many pixels wider than the object (0: drawn tight)
    margin: int = 0


def _click(*points: tuple[float, float]) -> Click:
    return Click(points=[ClickPoint(x=x, y=y, label=1) for x, y in points])


def _stroke(points: list[tuple[float, float]], width: float) -> Stroke:
    return Stroke(points=points, width=width)


CASES = [
    Case(
        "dog_on_bench",
        DATA / "dog_on_bench.png",
        [
            ("click", "chest", _click((250, 270))),
            ("click", "head", _click((258, 175))),
            ("box", "around the dog", Box(x0=165, y0=100, x1=325, y1=480)),
            ("stroke", "down the body", _stroke([(255, 140), (252, 220), (250, 300), (240, 345)], 14)),
        ],
        tuned=True,
        margin=8,
    ),
    Case(
        "corgi",
        DATA / "corgi.jpeg",
        [
            ("click", "body", _click((780, 470))),
            ("click", "head", _click((560, 410))),
            ("box", "around the dog", Box(x0=460, y0=295, x1=1050, y1=578)),
            ("stroke", "along the body", _stroke([(520, 420), (620, 440), (750, 470), (900, 470), (1000, 440)], 14)),
        ],
        tuned=True,
    ),
    Case(
        "truck",
        DATA / "truck.jpg",
        [
            ("click", "door", _click((1000, 560))),
            ("click", "rear window", _click((400, 460))),
            ("box", "around the truck", Box(x0=70, y0=270, x1=1725, y1=862)),
            ("stroke", "along the side", _stroke([(250, 450), (600, 550), (1000, 550), (1500, 550)], 20)),
        ],
        tuned=True,
    ),
    Case(
        "groceries",
        DATA / "groceries.jpg",
        [
            ("click", "left bag", _click((405, 280))),
            ("box", "around the left bag", Box(x0=362, y0=185, x1=452, y1=348)),
            ("stroke", "down the left bag", _stroke([(405, 215), (408, 320)], 12)),
        ],
        tuned=True,
    ),
    Case(
        "groceries_two",
        DATA / "groceries.jpg",
        [("click", "two bags, one click each", _click((405, 280), (475, 270)))],
        tuned=True,
    ),
    Case(
        "dog",
        DATA / "dog.jpg",
        [
            ("click", "back", _click((120, 450))),
            ("click", "head", _click((320, 300))),
            ("box", "around the dog", Box(x0=0, y0=220, x1=430, y1=534)),
            ("stroke", "back to head", _stroke([(60, 470), (200, 380), (320, 290)], 14)),
        ],
        tuned=False,
    ),
    Case(
        "workspace",
        DATA / "workspace.jpeg",
        [
            ("click", "the fan", _click((130, 290))),
            ("box", "around the fan", Box(x0=88, y0=240, x1=188, y1=362)),
            ("stroke", "down the fan", _stroke([(110, 265), (140, 300), (150, 345)], 10)),
        ],
        tuned=False,
    ),
    Case(
        "coffee",
        DATA / "coffee.png",
        [
            ("click", "saucer", _click((450, 250))),
            ("click", "cup", _click((300, 210))),
            ("box", "around cup and saucer", Box(x0=70, y0=10, x1=485, y1=395)),
            ("stroke", "across", _stroke([(100, 260), (250, 240), (450, 230)], 14)),
        ],
        tuned=False,
    ),
    Case(
        "rocket",
        DATA / "rocket.jpg",
        [
            ("click", "the rocket", _click((322, 250))),
            ("box", "around the rocket", Box(x0=300, y0=120, x1=345, y1=408)),
            ("stroke", "up the rocket", _stroke([(322, 160), (322, 380)], 8)),
        ],
        tuned=False,
    ),
]


def reference(case: Case, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool reference mask of a case."""
    if case.key == "dog_on_bench":
        return media.read_mask(DATA / "dog_on_bench_mask.png")
    polygons = json.loads(POLYGONS.read_text())[case.key]["polygons"]
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [np.asarray(p, dtype=np.int32) for p in polygons], 255)
    return canvas > 0


def overlay(image: np.ndarray, mask: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Green: both; red: selected, not in the reference; blue: missed."""
    out = image.copy()
    out[mask & ~ref] = [255, 0, 0]
    out[ref & ~mask] = [0, 0, 255]
    both = mask & ref
    out[both] = (out[both] * 0.5 + np.array([0, 255, 0]) * 0.5).astype(np.uint8)
    return out


def rss_mib() -> float:
    """This process's resident memory in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    """The hed backend with a real model pool and a private cache, as the server runs it."""

    def __init__(self) -> None:
        self.cache = RegionCache()
        self.backend = HedSegmentBackend(self.cache)
        self.ctx = SimpleNamespace(pool=ModelPool(), session_id="bench")

    def precompute(self, name: str, image: np.ndarray) -> float:
        start = time.perf_counter()
        self.backend.precompute(self.ctx, name, image)  # type: ignore[arg-type]
        return time.perf_counter() - start

    def answer(self, name: str, image: np.ndarray, gesture: Gesture) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        mask = self.backend.answer(self.ctx, name, image, gesture).mask  # type: ignore[arg-type]
        return mask, time.perf_counter() - start


def quality(bench: Bench, baseline: bool, overlays: Path | None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every gesture of every case: IoU (and grown IoU) per method, gesture time; precompute
    time per photo."""
    rows: list[dict[str, Any]] = []
    precompute: dict[str, float] = {}
    for case in CASES:
        image = media.read_image_rgb(case.image)
        ref = reference(case, image.shape[:2])
        name = case.image.name
        if name not in precompute:
            precompute[name] = bench.precompute(name, image)
        for number, (kind, what, gesture) in enumerate(case.gestures):
            results = {"hed": bench.answer(name, image, gesture)}
            if baseline:
                start = time.perf_counter()
                baseline_mask = grabcut_segment(image, gesture)
                results["grabcut"] = (baseline_mask, time.perf_counter() - start)
            for method, (mask, seconds) in results.items():
                row = {
                    "photo": case.key,
                    "split": "tuned" if case.tuned else "held-out",
                    "gesture": kind,
                    "what": what,
                    "method": method,
                    "iou": round(geometry.iou(mask, ref), 4),
                    "iou_grown": round(geometry.iou(geometry.dilate(mask, case.margin), ref), 4)
                    if case.margin
                    else None,
                    "seconds": round(seconds, 4),
                }
                rows.append(row)
                grown = f"{row['iou_grown']:.3f}" if row["iou_grown"] is not None else "-"
                print(
                    f"| {case.key} ({row['split']}) | {kind}: {what} | {method} | {row['iou']:.3f} | {grown} "
                    f"| {seconds * 1000:.0f} |",
                    flush=True,
                )
                if overlays:
                    overlays.mkdir(parents=True, exist_ok=True)
                    file = overlays / f"{case.key}_{number}_{kind}_{method}.png"
                    file.write_bytes(media.encode_png(overlay(image, mask, ref)))
    return rows, precompute


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean IoU per method, split and gesture (the dog_on_bench rows count with their grown
    IoU, the reference being 8 px loose), and the worst box."""
    out: dict[str, dict[str, float]] = {}
    for method in sorted({r["method"] for r in rows}):
        for split in ("tuned", "held-out", "all"):
            chosen = [r for r in rows if r["method"] == method and (split == "all" or r["split"] == split)]
            stats: dict[str, float] = {}
            for kind in ("click", "box", "stroke"):
                values = [
                    r["iou_grown"] if r["iou_grown"] is not None else r["iou"] for r in chosen if r["gesture"] == kind
                ]
                if values:
                    stats[kind] = round(statistics.mean(values), 3)
            boxes = [
                r["iou_grown"] if r["iou_grown"] is not None else r["iou"] for r in chosen if r["gesture"] == "box"
            ]
            if boxes:
                stats["worst box"] = round(min(boxes), 3)
            out[f"{method} / {split}"] = stats
    return out


def speed(bench: Bench, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Precompute of a 1024-px photo (median of 3 photos), gesture times after it, the first
    click without precompute."""
    sized: list[float] = []
    first_clicks: list[float] = []
    for case in CASES[:3]:
        image = media.read_image_rgb(case.image)
        scale = 1024 / max(image.shape[:2])
        big = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        sized.append(bench.precompute(f"1024/{case.key}", big))
        _, _, gesture = case.gestures[0]
        scaled = _scaled(gesture, scale)
        _, seconds = bench.answer(f"first/{case.key}", big, scaled)  # nothing precomputed: computes now
        first_clicks.append(seconds)
    hed_times = [r["seconds"] for r in rows if r["method"] == "hed"]
    return {
        "precompute_1024_s": [round(s, 3) for s in sized],
        "precompute_1024_median_s": round(statistics.median(sized), 3),
        "gesture_median_ms": round(1000 * statistics.median(hed_times), 1),
        "gesture_max_ms": round(1000 * max(hed_times), 1),
        "first_click_without_precompute_s": [round(s, 3) for s in first_clicks],
        "edge_side": edges.EDGE_SIDE,
    }


def _scaled(gesture: Gesture, scale: float) -> Gesture:
    if isinstance(gesture, Click):
        return Click(points=[ClickPoint(x=p.x * scale, y=p.y * scale, label=p.label) for p in gesture.points])
    if isinstance(gesture, Box):
        return Box(x0=gesture.x0 * scale, y0=gesture.y0 * scale, x1=gesture.x1 * scale, y1=gesture.y1 * scale)
    return Stroke(points=[(x * scale, y * scale) for x, y in gesture.points], width=gesture.width * scale)


def memory(bench: Bench) -> dict[str, Any]:
    """The cache's bytes per image (1024-px photos) and the RSS with 20 images embedded."""
    cache = RegionCache()
    backend = HedSegmentBackend(cache)
    photos = [media.read_image_rgb(case.image) for case in CASES if case.key != "groceries_two"]
    before = rss_mib()
    for index in range(20):
        image = photos[index % len(photos)]
        scale = 1024 / max(image.shape[:2])
        big = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        backend.precompute(bench.ctx, f"image/{index}.png", big)  # type: ignore[arg-type]
    gc.collect()
    per_image = [item.nbytes / 2**20 for item in cache._items.values()]
    return {
        "cache_bound_mib": round(cache.max_bytes / 2**20, 1),
        "cached_images": len(cache),
        "cache_used_mib": round(cache.used_bytes() / 2**20, 2),
        "per_image_mib_max": round(max(per_image), 2),
        "per_image_mib_median": round(statistics.median(per_image), 2),
        "rss_before_mib": round(before, 0),
        "rss_with_20_images_mib": round(rss_mib(), 0),
    }


def fill_times() -> list[dict[str, Any]]:
    """Time the embedded remove fill on each reference grown over its edge band."""
    from igpt_tools.remove import fill_region, grow_to_edge_band

    net = edges.load_hed("cpu")
    rows = []
    for case in CASES[:3]:
        image = media.read_image_rgb(case.image)
        ref = reference(case, image.shape[:2])
        small = edges.run_hed(net, image)
        edge = cv2.resize(small, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        hole, reach, _ = grow_to_edge_band(ref, edge)
        start = time.perf_counter()
        fill_region(image, hole)
        rows.append(
            {
                "photo": case.key,
                "hole": int(hole.sum()),
                "reach_px": reach,
                "fill_s": round(time.perf_counter() - start, 2),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-baseline", action="store_true", help="skip the GrabCut baseline column")
    parser.add_argument("--overlays", type=Path, help="write overlay PNGs to this folder")
    parser.add_argument("--fill", action="store_true", help="also time the remove tool's fill on the references")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    opts = parser.parse_args()
    load_before = os.getloadavg()[0]
    print(f"load average before the run: {load_before:.1f} ({os.cpu_count()} cores)")
    bench = Bench()
    print("| photo (split) | gesture | method | IoU | IoU grown to the reference's margin | time (ms) |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows, precompute = quality(bench, not opts.no_baseline, opts.overlays)
    means = summary(rows)
    print()
    for label, stats in means.items():
        print(f"mean IoU {label:>22}: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    print()
    print("precompute (HED + regions) per photo, s: " + ", ".join(f"{k} {v:.2f}" for k, v in precompute.items()))
    timing = speed(bench, rows)
    print(f"speed: {timing}")
    mem = memory(bench)
    print(f"memory: {mem}")
    fills = fill_times() if opts.fill else []
    for row in fills:
        print(f"fill: {row}")
    load_after = os.getloadavg()[0]
    print(f"load average after the run: {load_after:.1f}")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
            "load_average": [round(load_before, 1), round(load_after, 1)],
            "rows": rows,
            "means": means,
            "precompute_s": {k: round(v, 3) for k, v in precompute.items()},
            "speed": timing,
            "memory": mem,
            "fill": fills,
        }
        opts.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Quality and speed of the embedded segmenter (GrabCut seeded by a gesture).

For each photo with a reference mask, two clicks, a box and a brush stroke (written out
below, in image pixels, as a person would give them) are segmented by the ``opencv`` segment
backend; the script prints the IoU with the reference and the time per call. ``--baseline``
adds plain GrabCut seeded the simplest way, for comparison. ``--overlays DIR`` writes
PNGs (green: both, red: extra, blue: missed) to look at; ``--fill`` also times the remove
tool's fill on each reference mask.

References: ``dog_on_bench_mask.png`` comes with the photo (IOPaint's test data; a loose
inpainting mask about 8 px wider than the dog, so its rows also show the IoU of our mask
grown by 8 px); the corgi and truck references are polygons drawn by hand for this
benchmark (bench/data/README.md says how).

Run: ``.venv/bin/python bench/segment_quality.py [--baseline] [--fill] [--overlays DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igpt_server import media  # noqa: E402
from igpt_server.perception import geometry  # noqa: E402
from igpt_server.perception.gestures import Box, Click, ClickPoint, Stroke  # noqa: E402
from igpt_tools.segment import grabcut_segment  # noqa: E402

DATA = ROOT / "tests" / "data"
POLYGONS = ROOT / "bench" / "data" / "reference_polygons.json"


@dataclass(frozen=True)
class Case:
    photo: str
    image: Path
    gestures: list[tuple[str, Click | Box | Stroke]]
    #: the reference is this many pixels wider than the object (0: drawn tight)
    margin: int = 0


def _click(x: float, y: float) -> Click:
    return Click(points=[ClickPoint(x=x, y=y, label=1)])


CASES = [
    Case(
        "dog_on_bench",
        DATA / "dog_on_bench.png",
        [
            ("click", _click(250, 270)),
            ("click", _click(258, 175)),
            ("box", Box(x0=165, y0=100, x1=325, y1=480)),
            ("stroke", Stroke(points=[(255, 140), (252, 220), (250, 300), (240, 345)], width=14)),
        ],
        margin=8,
    ),
    Case(
        "corgi",
        DATA / "corgi.jpeg",
        [
            ("click", _click(780, 470)),
            ("click", _click(560, 410)),
            ("box", Box(x0=460, y0=295, x1=1050, y1=578)),
            ("stroke", Stroke(points=[(520, 420), (620, 440), (750, 470), (900, 470), (1000, 440)], width=14)),
        ],
    ),
    Case(
        "truck",
        DATA / "truck.jpg",
        [
            ("click", _click(1000, 560)),
            ("click", _click(400, 460)),
            ("box", Box(x0=70, y0=270, x1=1725, y1=862)),
            ("stroke", Stroke(points=[(250, 450), (600, 550), (1000, 550), (1500, 550)], width=20)),
        ],
    ),
]


def reference(case: Case, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool reference mask of a case."""
    if case.photo == "dog_on_bench":
        return media.read_mask(DATA / "dog_on_bench_mask.png")
    polygons = json.loads(POLYGONS.read_text())[case.photo]["polygons"]
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [np.asarray(p, dtype=np.int32) for p in polygons], 255)
    return canvas > 0


def baseline(image: np.ndarray, gesture: Click | Box | Stroke) -> np.ndarray:
    """Plain GrabCut (5 iterations, full resolution): the box as its rectangle; a click or a
    stroke as sure foreground inside a fixed square (a third of the shorter side) around it."""
    height, width = image.shape[:2]
    labels = np.full((height, width), cv2.GC_BGD, dtype=np.uint8)
    if isinstance(gesture, Box):
        rect = geometry.clip_box(gesture.xyxy(), height, width)
        seeds = np.zeros((height, width), dtype=bool)
    else:
        x0, y0, x1, y1 = geometry.gesture_box(gesture)
        half = min(height, width) / 6
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        rect = geometry.clip_box(
            (min(x0, cx - half), min(y0, cy - half), max(x1, cx + half), max(y1, cy + half)), height, width
        )
        seeds = geometry.gesture_region(gesture, height, width)
    labels[rect[1] : rect[3], rect[0] : rect[2]] = cv2.GC_PR_FGD
    labels[seeds] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(np.ascontiguousarray(image[:, :, ::-1]), labels, (0, 0, 0, 0), bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))


def overlay(image: np.ndarray, mask: np.ndarray, ref: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[mask & ~ref] = [255, 0, 0]
    out[ref & ~mask] = [0, 0, 255]
    both = mask & ref
    out[both] = (out[both] * 0.5 + np.array([0, 255, 0]) * 0.5).astype(np.uint8)
    return out


def fill_times() -> None:
    """Time the embedded remove fill (mask grown as the tool grows it) on the references."""
    from igpt_tools.remove import fill_region

    print("| photo | hole (pixels) | fill time (s) |")
    print("| --- | --- | --- |")
    for case in CASES:
        image = media.read_image_rgb(case.image)
        ref = reference(case, image.shape[:2])
        hole = geometry.dilate(ref, geometry.dilation_for(ref))
        start = time.perf_counter()
        fill_region(image, hole)
        print(f"| {case.photo} | {int(hole.sum())} | {time.perf_counter() - start:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="store_true", help="also run plain GrabCut")
    parser.add_argument("--overlays", type=Path, help="write overlay PNGs to this folder")
    parser.add_argument("--fill", action="store_true", help="also time the remove tool's fill on each reference")
    opts = parser.parse_args()
    methods = {"opencv": grabcut_segment}
    if opts.baseline:
        methods["plain grabcut"] = baseline
    print(f"load average before the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print("| photo | gesture | method | IoU | IoU, grown to the reference's margin | time (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    scores: dict[tuple[str, str], list[float]] = {}
    for case in CASES:
        image = media.read_image_rgb(case.image)
        ref = reference(case, image.shape[:2])
        for number, (kind, gesture) in enumerate(case.gestures):
            for method, run in methods.items():
                start = time.perf_counter()
                mask = run(image, gesture)
                seconds = time.perf_counter() - start
                score = geometry.iou(mask, ref)
                scores.setdefault((method, kind), []).append(score)
                grown = f"{geometry.iou(geometry.dilate(mask, case.margin), ref):.3f}" if case.margin else "-"
                print(f"| {case.photo} | {kind} | {method} | {score:.3f} | {grown} | {seconds:.2f} |")
                if opts.overlays:
                    opts.overlays.mkdir(parents=True, exist_ok=True)
                    name = f"{case.photo}_{number}_{kind}_{method.replace(' ', '_')}.png"
                    (opts.overlays / name).write_bytes(media.encode_png(overlay(image, mask, ref)))
    print()
    for (method, kind), values in scores.items():
        print(f"mean IoU {method:>14} {kind:>6}: {statistics.mean(values):.3f}")
    if opts.fill:
        print()
        fill_times()
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Video benchmark (embedded tier): processing seconds per second of video, tracking quality, memory.

Clips: ``tests/data/bigbuckbunny.mp4`` (720p, 5.3 s, sound), ``tests/data/bikes.mp4`` (640x272,
10 s), and clips made here as the tests make them (tests/video_clips.py): the dog of
dog_on_bench moved over one shot of bikes.mp4 (known mask per frame), bikes.mp4 with jfk.flac
muxed over it (speech), and 1080p clips of 20 s and 60 s for memory.

Figures (``--json`` keeps them):

* ``s_per_s``: seconds of processing per second of video (below 1: faster than real time) for
  frame (one frame fetched per second of video), highlight (cuts, motion, loudness, transcript,
  cut), transcript, narrate (facts, script by the configured LLM, espeak-ng, mix) and track
  (follow + re-encode with blur);
* ``track_fps``: frames per second of following alone at 640 px;
* ``iou``: mean and worst per-frame IoU of the tracked mask on the made clip, outline
  refinement off and on;
* ``peak_rss_mib``: peak resident memory of a fresh process that analyses (highlight pass) and
  transcodes a 1080p clip, for two lengths: flat in the length means streamed.

    python bench/video.py --json bench/results/video.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from igpt_server.models.pool import ModelPool  # noqa: E402
from igpt_server.settings import Settings  # noqa: E402
from tests.video_clips import BIKES, BUNNY, DATA, moving_object_clip, with_speech  # noqa: E402


class _Ctx:
    """A minimal tool context over plain files (the benchmark calls the tools' functions)."""

    def __init__(self, settings: Settings) -> None:
        self.session_id = "bench"
        self.settings = settings
        self.pool = ModelPool(settings)


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def bench_frames(file: Path) -> float:
    from igpt_server import media
    from igpt_tools.video import clip

    info = media.probe_video(file)
    times = np.arange(0, info.duration_s, 1.0)
    seconds, _ = _timed(lambda: [clip.frame_at(file, float(t)) for t in times])
    return seconds / info.duration_s


def bench_highlight(ctx: _Ctx, file: Path) -> float:
    from igpt_server import media
    from igpt_tools.video.common import VideoRef
    from igpt_tools.video.highlight import find_highlight

    info = media.probe_video(file)
    ref = VideoRef(artifact=None, file=file, info=info)  # type: ignore[arg-type]
    find_highlight(ctx, ref, None, 3.0, 12.0)  # type: ignore[arg-type]  # warm-up: speech model load
    seconds, _ = _timed(lambda: find_highlight(ctx, ref, None, 3.0, 12.0))  # type: ignore[arg-type]
    return seconds / info.duration_s


def bench_transcript(ctx: _Ctx, file: Path) -> tuple[float, str]:
    from igpt_server import media
    from igpt_tools.video.speech import transcribe

    info = media.probe_video(file)
    seconds, heard = _timed(lambda: transcribe(ctx, file, True))  # type: ignore[arg-type]
    return seconds / info.duration_s, heard.text


def bench_narrate(ctx: _Ctx, file: Path) -> tuple[float, dict[str, Any]]:
    from igpt_server import media
    from igpt_tools.video.narrate import NarrateArgs, _narrate
    from igpt_tools.video.voice import EspeakBackend

    info = media.probe_video(file)
    args = NarrateArgs(video_path="video/00000000_bench.mp4", style="funny", request="explain this in a funny way")
    notes: list[str] = []
    seconds, (_, data) = _timed(lambda: _narrate(ctx, file, info, EspeakBackend(), args, notes))  # type: ignore[arg-type]
    return seconds / info.duration_s, {**data, "notes": notes}


def bench_track(folder: Path) -> dict[str, Any]:
    from igpt_tools.video import clip, effects, tracking
    from igpt_tools.video.track import _follow

    made = moving_object_clip(folder / "moving.mp4")
    duration = len(made.masks) / made.fps
    out: dict[str, Any] = {}
    empty = np.zeros((272, 640), dtype=bool)
    for refine in (False, True):

        def follow(refine: bool = refine) -> tracking.MaskTrack:
            return _follow(made.path, 1.0, made.mask_at(1.0), (640, 272), refine)

        seconds, track = _timed(follow)
        ious = [
            tracking.iou(_or(track.get(f.time, 0.02), empty), made.mask_at(f.time)) for f in clip.read_frames(made.path)
        ]
        key = "refine" if refine else "warp"
        out[f"track_fps_{key}"] = len(made.masks) / seconds
        out[f"iou_mean_{key}"] = float(np.mean(ious))
        out[f"iou_min_{key}"] = float(np.min(ious))
    track = _follow(made.path, 1.0, made.mask_at(1.0), (640, 272), False)
    seconds, _ = _timed(
        lambda: clip.transcode(made.path, lambda f: effects.apply("blur", f.image, track.get(f.time, 0.02)))
    )
    out["render_blur_s_per_s"] = seconds / duration
    out["frames"] = len(made.masks)
    return out


def _or(mask: np.ndarray | None, empty: np.ndarray) -> np.ndarray:
    return empty if mask is None else mask


def _flat_1080p(target: Path, seconds: int) -> Path:
    """A 1080p 25 fps clip of a slowly panning photo (fast to encode, real picture content)."""
    import av
    import cv2
    from PIL import Image

    photo = np.asarray(Image.open(DATA / "truck.jpg").convert("RGB"))
    wide = np.asarray(cv2.resize(photo, (2400, 1600)), dtype=np.uint8)
    with av.open(str(target), "w") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for index in range(seconds * 25):
            x = index % 400
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[200:1280, x : x + 1920]), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, 25)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return target


_PROBE = """
import resource, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from igpt_server import media
from igpt_tools.video import analysis, clip
file = Path({file!r})
info = media.probe_video(file)
analysis.picture_signals(file, info.duration_s, info.fps)
clip.transcode(file, lambda f: f.image, end=info.duration_s)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def bench_memory(folder: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for seconds in (20, 60):
        file = _flat_1080p(folder / f"flat_{seconds}s.mp4", seconds)
        code = _PROBE.format(root=str(ROOT), file=str(file))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[f"{seconds}s"] = float(done.stdout.strip().splitlines()[-1])
    return out


_LLAMA_PROBE = """
from igpt_server.settings import Settings
from igpt_tools.video.script import smollm_path
from llama_cpp import Llama
llm = Llama(model_path=str(smollm_path(Settings())), n_ctx=512, n_threads=2, verbose=False)
llm("Tell me a short story about a dog on a bench in the park.", max_tokens=2)
"""


def llama_works() -> bool:
    """Whether llama.cpp survives a multi-token prompt on this machine (in a child process:
    a build that uses this CPU's AMX kernels dies with SIGSEGV)."""
    done = subprocess.run([sys.executable, "-c", _LLAMA_PROBE], capture_output=True, cwd=ROOT, check=False)
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--llm", default="embedded", choices=["embedded", "none"], help="narration script writer")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(), "s_per_s": {}}
    llm = args.llm
    if llm == "embedded" and not llama_works():
        results["llm_note"] = "the embedded LLM (llama.cpp) crashed on a multi-token prompt here; scripts without LLM"
        llm = "none"
    results["llm"] = llm
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="igpt-bench-video-")), llm={"provider": llm})
    ctx = _Ctx(settings)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        speech = with_speech(BIKES, DATA / "jfk.flac", folder / "bikes_jfk.mp4")
        results["s_per_s"]["frame_bunny_720p"] = bench_frames(BUNNY)
        results["s_per_s"]["highlight_bunny_720p"] = bench_highlight(ctx, BUNNY)
        results["s_per_s"]["highlight_speech_640"] = bench_highlight(ctx, speech)
        rtf, text = bench_transcript(ctx, speech)
        results["s_per_s"]["transcript_speech_640"] = rtf
        results["transcript"] = text
        rtf, narration = bench_narrate(ctx, BIKES)
        results["s_per_s"]["narrate_bikes_640"] = rtf
        results["narration"] = narration
        track = bench_track(folder)
        results["s_per_s"]["track_blur_render_640"] = track.pop("render_blur_s_per_s")
        results["track"] = track
        results["peak_rss_mib_1080p"] = bench_memory(folder)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

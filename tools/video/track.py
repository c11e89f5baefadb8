"""The ``track`` tool: follow an object selected on one frame through the whole clip and edit it.

The selection is a mask of a frame made by the ``frame`` tool (the page's paused player does
the same), so the tool knows the video and the time. The object is followed forward to the
end and backward to the start, at 640 px (backward decoding in chunks of 2 s, so memory stays
bounded), by SAM 2's video predictor when its checkpoint is in the model directory
(:mod:`igpt_tools.video.sam2_track`, backend ``sam2-video``), otherwise by the embedded
OpenCV tracker (:mod:`igpt_tools.video.tracking`, backend ``pyav``); then the clip is
re-encoded once with the effect on every frame where the object was followed
(:mod:`igpt_tools.video.effects`): ``blur`` (the default: the privacy case), ``pixelate``,
``remove`` (frame-wise fill, with its quality note) or ``cutout`` (webm with alpha, no
sound). The sound is copied unchanged.

A lost track is not an error: the result says from which time on, and why, the object could
not be followed, and those frames are left as they were. The output is a new video artifact
whose parent is the source video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from pydantic import Field

from igpt_server.errors import InvalidInput
from igpt_server.perception import geometry
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import MaskPath, NewArtifact, Tool, ToolArgs, ToolContext, ToolOutput, ToolWords
from igpt_tools.video import clip, effects, tracking
from igpt_tools.video.common import PyAvBackend, selection_frame, video
from igpt_tools.video.sam2_track import Sam2VideoBackend

#: follows a working-size mask through (time, RGB) frames in tracking order (see tracking.follow)
Follower = Callable[[Iterable[tuple[float, np.ndarray]], np.ndarray], Iterator[tracking.Step]]

_DONE = {
    "blur": "Blurred",
    "pixelate": "Pixelated",
    "remove": "Removed",
    "cutout": "Cut out",
}
REMOVE_NOTE = (
    "The embedded tier fills the object frame by frame from its surroundings (OpenCV Telea): large objects "
    "leave a smear and the fill may flicker; an inpainting model on the full tier does better."
)


class TrackArgs(ToolArgs):
    mask_path: MaskPath = Field(description="the selected object on a frame of the video (made by the frame tool)")
    effect: effects.Effect = Field(
        "blur", description="what to do to the object in every frame: blur, pixelate, remove or cutout"
    )
    refine: bool = Field(
        False,
        description="re-fit the outline to the picture in every frame (for objects that change shape; slower; "
        "SAM 2 on the full tier always does)",
    )


class TrackTool(Tool):
    name = "track"
    description = (
        "Follow an object selected on a frame of a video through the whole clip and blur, pixelate, remove or "
        "cut it out in every frame (e.g. 'blur him in the whole video', 'hide the licence plate throughout'). "
        "Give mask_path (a selection on a frame taken from the video) and effect. Returns a new video."
    )
    args_model = TrackArgs
    # multi-word phrases only: a bare "blur" or "remove" stays with the image tools
    words = ToolWords(
        verbs=(
            "track",
            "follow * through",
            "blur * whole video",
            "blur * whole clip",
            "blur * throughout",
            "blur * every frame",
            "pixelate * whole video",
            "pixelate * throughout",
            "hide * whole video",
            "remove * whole video",
            "remove * from the video",
            "cut out * from the video",
        ),
        nouns=("whole video", "whole clip", "every frame", "all frames", "throughout the video"),
        examples=(
            "blur him in the whole video",
            "pixelate this face throughout the clip",
            "follow the dog through the video and cut it out",
            "remove this car from the whole video",
        ),
    )

    def run(self, args: TrackArgs, ctx: ToolContext, backend: PyAvBackend | Sam2VideoBackend) -> ToolOutput:
        frame_path, video_path, time = selection_frame(ctx, args.mask_path)
        ref = video(ctx, video_path)
        mask = ctx.read_mask(args.mask_path)
        if not mask.any():
            raise InvalidInput(f"{args.mask_path} selects nothing; select the object on the frame first")
        height, width = mask.shape
        if (ref.info.width, ref.info.height) != (width, height) and (ref.info.height, ref.info.width) != (
            width,
            height,
        ):
            raise InvalidInput(
                f"the selection is {width}x{height} but the video's frames are {ref.info.width}x{ref.info.height}; "
                "select on a frame taken from this video"
            )
        work = tracking.work_size(width, height)
        first = geometry.resize_mask(mask, work[1], work[0])
        follower = None
        if isinstance(backend, Sam2VideoBackend):
            sam2 = backend

            def follower(frames: Iterable[tuple[float, np.ndarray]], start: np.ndarray) -> Iterator[tracking.Step]:
                return sam2.follow(ctx, frames, start)

        track = _follow(ref.file, time, first, work, args.refine, ref.info.fps, follower)
        tolerance = 0.5 / max(ref.info.fps, 1.0)

        def edit(frame: clip.TimedFrame) -> np.ndarray:
            small = track.get(frame.time, tolerance)
            full = None if small is None else geometry.resize_mask(small, *frame.image.shape[:2])
            return effects.apply(args.effect, frame.image, full)

        message = f"applying {args.effect} to every frame"
        data = clip.transcode(
            ref.file, edit, alpha=args.effect == "cutout", message=message, duration=ref.info.duration_s
        )
        return _output(args, video_path, frame_path, time, track, data, ref.info.duration_s)


def _follow(
    file: Path,
    time: float,
    first: np.ndarray,
    work: tuple[int, int],
    refine: bool,
    fps: float = 25.0,
    follower: Follower | None = None,
) -> tracking.MaskTrack:
    """Track ``first`` (HxW bool working-size mask on the frame at ``time``) forward and backward
    with ``follower`` (default: the embedded OpenCV tracker, refining outlines when ``refine``)."""
    track = tracking.MaskTrack(size=(work[1], work[0]))
    directions = {
        "forward": clip.read_frames(file, time, None, tracking.WORK_SIDE),
        # the end is exclusive: half a frame past the selected frame's time includes it
        "backward": clip.frames_backward(file, 0.0, time + 0.5 / fps, tracking.WORK_SIDE),
    }
    for name, frames in directions.items():
        steps = (
            tracking.follow(_sized(frames, work), first, refine=refine)
            if follower is None
            else follower(_sized(frames, work), first)
        )
        for index, tracked in enumerate(steps):
            clip.step(f"following the object {name}", tracked.time, None, index)
            if tracked.mask is None:
                track.lost[name] = tracked.time
                track.reasons[name] = tracked.reason or "lost"
                break
            track.put(tracked.time, tracked.mask)
    return track


def _sized(frames: Iterable[clip.TimedFrame], work: tuple[int, int]) -> Iterator[tuple[float, np.ndarray]]:
    """(time, RGB at exactly the working size ``work`` = (width, height)) of each frame."""
    for frame in frames:
        image = frame.image
        if image.shape[1::-1] != work:
            image = cv2.resize(image, work, interpolation=cv2.INTER_AREA)
        yield frame.time, image


def _output(
    args: TrackArgs,
    video_path: str,
    frame_path: str,
    time: float,
    track: tracking.MaskTrack,
    data: bytes,
    duration: float,
) -> ToolOutput:
    times = sorted(track.frames)
    covered = (times[0], times[-1]) if times else (time, time)
    lost = track.lost
    parts = [
        f"{_DONE[args.effect]} the object selected at {time:.2f} s in {len(times)} frames "
        f"({covered[0]:.2f} to {covered[1]:.2f} s of {duration:.2f} s)."
    ]
    if "forward" in lost:
        parts.append(
            f"I lost it at {lost['forward']:.2f} s ({track.reasons['forward']}); the frames after that are unedited."
        )
    if "backward" in lost:
        parts.append(
            f"Going back from {time:.2f} s I lost it at {lost['backward']:.2f} s "
            f"({track.reasons['backward']}); the frames before that are unedited."
        )
    if args.effect == "remove":
        parts.append(REMOVE_NOTE)
    if args.effect == "cutout":
        parts.append("The cut-out is a webm (VP9) with transparency and no sound.")
    ext = "webm" if args.effect == "cutout" else "mp4"
    boxes = track.boxes()
    sample = {f"{t:.2f}": list(b) for i, (t, b) in enumerate(boxes.items()) if i % 5 == 0}
    new = NewArtifact(
        kind=ArtifactKind.video,
        content=data,
        parent=video_path,
        stem=f"{args.effect}_tracked",
        ext=ext,
        meta={"effect": args.effect, "selection": args.mask_path, "frame": frame_path, "tracked_frames": len(times)},
    )
    return ToolOutput(
        text=" ".join(parts),
        artifacts=[new],
        data={
            "effect": args.effect,
            "tracked_frames": len(times),
            "covered": list(covered),
            "lost": lost,
            "boxes_work_px": sample,
        },
    )

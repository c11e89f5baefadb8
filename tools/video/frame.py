"""The ``frame`` tool: the picture on screen at a time of a video, as an image artifact.

The frame becomes the active image; its parent is the video and its meta holds ``video`` and
``time_s`` (the frame's own presentation time, at or just before the asked time), so every
image tool and gesture works on it and ``track`` knows where in the clip a selection on it
was made. A time past the end is a 422 ``time_out_of_range``.
"""

from __future__ import annotations

from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import NewArtifact, Tool, ToolArgs, ToolContext, ToolOutput, ToolWords, VideoPath
from igpt_tools.video import clip
from igpt_tools.video.common import PyAvBackend, TimeValue, stem_time, video


class FrameArgs(ToolArgs):
    video_path: VideoPath
    time: TimeValue = 0.0


class FrameTool(Tool):
    name = "frame"
    description = (
        "Take the frame of a video at a time (seconds, or m:ss like '0:12') as a new image, which becomes "
        "the active image: then select, read, remove or ask about things on it. Give video_path and time."
    )
    args_model = FrameArgs
    words = ToolWords(
        verbs=("pause at", "go to * second", "take * frame", "show * frame", "grab * still", "screenshot"),
        nouns=("frame", "still frame", "screenshot"),
        examples=("show me the frame at 0:12", "pause at 3 seconds", "grab a still of this video at 1:05"),
    )

    def run(self, args: FrameArgs, ctx: ToolContext, backend: PyAvBackend) -> ToolOutput:
        ref = video(ctx, args.video_path)
        time = clip.parse_time(args.time)
        clip.check_time(time, ref.info.duration_s)
        frame = clip.frame_at(ref.file, time)
        new = NewArtifact(
            kind=ArtifactKind.image,
            content=frame.image,
            parent=args.video_path,
            stem=stem_time("frame", frame.time),
            role="image",
            meta={"video": args.video_path, "time_s": round(frame.time, 4), "asked_time_s": time},
        )
        height, width = frame.image.shape[:2]
        text = f"Frame of {args.video_path} at {frame.time:.2f} s ({width}x{height}); it is now the active image."
        return ToolOutput(text=text, artifacts=[new], data={"time": frame.time, "video": args.video_path})

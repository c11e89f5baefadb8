"""What the video tools share: the backend that needs PyAV, time arguments, artifact look-ups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from igpt_server import media
from igpt_server.errors import InvalidInput
from igpt_server.store import Artifact, ArtifactKind
from igpt_server.tooling.interface import Backend, ToolContext

#: a time in a clip: seconds (12.5) or a clock string ("0:12", "1:02.5", "12s")
#: (no regex pattern in the schema: the embedded LLM's grammar compiler cannot take one;
#: :func:`igpt_server.perception.timecode.parse_time` checks the text and answers 422)
TimeValue = Annotated[
    float | Annotated[str, Field(max_length=16)],
    Field(description="a time in the clip: seconds (12.5) or m:ss ('0:12')"),
]


class PyAvBackend(Backend):
    """Decoding and encoding with PyAV (FFmpeg's libraries), image work with OpenCV."""

    name = "pyav"
    requires = ("av", "cv2")


@dataclass(frozen=True)
class VideoRef:
    """A video artifact of the session: its record, its file and what it holds."""

    artifact: Artifact
    file: Path
    info: media.VideoInfo


def video(ctx: ToolContext, path: str) -> VideoRef:
    """The video artifact at ``path`` with its probe (422 when it is not a video)."""
    artifact = ctx.artifact(path, (ArtifactKind.video,))
    file = ctx.file(path)
    return VideoRef(artifact, file, media.probe_video(file))


def frame_origin(ctx: ToolContext, image_path: str) -> tuple[str, float] | None:
    """(video path, time in s) of a frame made by the ``frame`` tool, or None for other images."""
    meta = ctx.artifact(image_path).meta
    video_path, time = meta.get("video"), meta.get("time_s")
    if isinstance(video_path, str) and isinstance(time, (int, float)):
        return video_path, float(time)
    return None


def stem_time(prefix: str, seconds: float) -> str:
    """A file-name stem with a time, e.g. ``frame_12_40s``."""
    return f"{prefix}_{seconds:.2f}".replace(".", "_") + "s"


def selection_frame(ctx: ToolContext, mask_path: str) -> tuple[str, str, float]:
    """(frame image path, video path, time) of a selection made on a frame of a video.

    422 with the fix when the mask's image is not a frame of a video.
    """
    mask = ctx.artifact(mask_path, (ArtifactKind.mask,))
    if mask.parent is None:
        raise InvalidInput(f"{mask_path} belongs to no image; select the object on a frame of the video")
    origin = frame_origin(ctx, mask.parent)
    if origin is None:
        raise InvalidInput(
            f"{mask_path} selects an object on {mask.parent}, which is not a frame of a video; take a frame "
            "first (the frame tool, or pause the player) and select the object on it",
            code="not_a_video_frame",
        )
    return mask.parent, origin[0], origin[1]

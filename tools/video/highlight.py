"""The ``highlight`` tool: the segment a person means, found and cut out of the clip.

Around a picked time, or, with none, the most eventful stretch of the clip, judged from shot
cuts (PySceneDetect), motion, loudness and speech (:mod:`igpt_tools.video.analysis`). A clip
without sound is judged by its picture alone, and says so. The cut is a new video artifact
(mp4) whose parent is the source; it is made without re-encoding when the start falls on a
keyframe, and the result says when it had to re-encode (:func:`igpt_tools.video.clip.cut`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, model_validator

from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import (
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
    VideoPath,
)
from igpt_tools.video import analysis, clip
from igpt_tools.video.common import PyAvBackend, TimeValue, VideoRef, stem_time, video
from igpt_tools.video.speech import transcribe


class HighlightArgs(ToolArgs):
    video_path: VideoPath
    time: TimeValue | None = Field(None, description="a moment inside the highlight the person means, if any")
    min_seconds: float = Field(3.0, gt=0, le=60, description="shortest highlight")
    max_seconds: float = Field(12.0, gt=0, le=120, description="longest highlight")

    @model_validator(mode="after")
    def _ordered(self) -> HighlightArgs:
        if self.min_seconds > self.max_seconds:
            raise ValueError(f"min_seconds {self.min_seconds} is over max_seconds {self.max_seconds}")
        return self


@dataclass(frozen=True)
class Highlight:
    """A found highlight: the cut, where it lies, why it was chosen, and the clip's speech."""

    cut: clip.CutResult
    reason: str
    signals: analysis.Signals
    notes: list[str]


def find_highlight(ctx: ToolContext, ref: VideoRef, at: float | None, min_s: float, max_s: float) -> Highlight:
    """Analyse ``ref`` and cut its highlight (shared by ``highlight`` and ``narrate``)."""
    if at is not None:
        clip.check_time(at, ref.info.duration_s)
    signals = analysis.picture_signals(ref.file, ref.info.duration_s, ref.info.fps)
    notes: list[str] = []
    if ref.info.has_audio:
        signals.loudness = analysis.loudness(ref.file)
        heard = transcribe(ctx, ref.file, True)
        signals.speech = heard.segments
        if heard.note:
            notes.append(heard.note)
    else:
        notes.append("the clip has no sound, so the picture alone decided")
    span, reason = analysis.choose(signals, at, min(min_s, ref.info.duration_s), max_s)
    return Highlight(clip.cut(ref.file, span.start, span.end), reason, signals, notes)


class HighlightTool(Tool):
    name = "highlight"
    description = (
        "Find the highlight of a video (around a picked time, or the most eventful part) from shot cuts, "
        "motion, loudness and speech, and cut it out as a new clip. Give video_path, and time when the "
        "person points at a moment. Returns the start, the end and the clip."
    )
    args_model = HighlightArgs
    words = ToolWords(
        verbs=("find * highlight", "cut * highlight", "trim * video", "shorten * video", "cut * part around"),
        nouns=("highlight", "best part", "best moment", "most exciting part", "key moment"),
        examples=("find the highlight of this video", "cut the part around 0:12", "what is the best moment?"),
    )

    def run(self, args: HighlightArgs, ctx: ToolContext, backend: PyAvBackend) -> ToolOutput:
        ref = video(ctx, args.video_path)
        at = None if args.time is None else clip.parse_time(args.time)
        found = find_highlight(ctx, ref, at, args.min_seconds, args.max_seconds)
        cut = found.cut
        new = NewArtifact(
            kind=ArtifactKind.video,
            content=cut.data,
            parent=args.video_path,
            stem=stem_time("highlight", cut.start),
            ext="mp4",
            meta={"start_s": round(cut.start, 3), "end_s": round(cut.end, 3), "reencoded": cut.reencoded},
        )
        text = f"The highlight runs from {cut.start:.2f} s to {cut.end:.2f} s ({found.reason}); {cut.note}." + "".join(
            f" Note: {n}." for n in found.notes
        )
        data = {
            "start": cut.start,
            "end": cut.end,
            "reencoded": cut.reencoded,
            "cuts": found.signals.cuts,
            "speech": [list(s) for s in found.signals.speech],
            "notes": found.notes,
        }
        return ToolOutput(text=text, artifacts=[new], data=data)

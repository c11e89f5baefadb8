"""The ``narrate`` tool: a short spoken interpretation of a clip, mixed over it.

With ``part: "highlight"`` it first finds and cuts the highlight (as the ``highlight`` tool
does) and narrates that, so "explain the highlight of this video in a funny way" is one
call. Steps: facts about the clip and a script by the configured LLM
(:mod:`igpt_tools.video.script`), speech by the TTS backend (a VITS voice from
``<model_dir>/tts/`` on the full tier, :mod:`igpt_tools.video.tts`; espeak-ng otherwise)
and the mix over the clip's lowered sound (:mod:`igpt_tools.video.voice`). A clip without sound gets the voice alone.
The narrated clip is a new mp4 video artifact; the script is in the reply and in ``data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from igpt_server import media
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
from igpt_tools.video.common import TimeValue, video
from igpt_tools.video.highlight import find_highlight
from igpt_tools.video.script import gather_facts, write_script
from igpt_tools.video.speech import transcribe
from igpt_tools.video.voice import LEAD_S, VoiceBackend, mux_voiceover

#: tones of the voice-over (choice values: the controller fills them from the words, "in a funny way")
Style = Literal["lively", "funny", "dramatic", "calm", "documentary", "sports"]


class NarrateArgs(ToolArgs):
    video_path: VideoPath
    style: Style = Field("lively", description="tone of the voice-over")
    part: Literal["whole", "highlight"] = Field(
        "whole", description="narrate the whole clip, or first cut its highlight and narrate that"
    )
    request: str | None = Field(None, max_length=300, description="the person's own words, to steer the script")
    time: TimeValue | None = Field(None, description="with part=highlight: a moment inside the highlight")


class NarrateTool(Tool):
    name = "narrate"
    description = (
        "Explain or interpret a video with a short spoken voice-over mixed over it (its own sound lowered). "
        "Give video_path, a style ('funny', 'dramatic') and the request; part='highlight' first cuts the "
        "highlight and narrates that ('explain the highlight of this video in a funny way'). Returns a new video."
    )
    args_model = NarrateArgs
    words = ToolWords(
        verbs=(
            "narrate",
            "voice over",
            "commentate",
            "explain * video",
            "explain * clip",
            "explain * highlight",
            "interpret * video",
            "comment on * video",
        ),
        nouns=("voice-over", "voiceover", "narration", "commentary", "interpretation"),
        examples=(
            "explain the highlight of this video in a funny way",
            "narrate this clip like a nature documentary",
            "add a voice-over to the video",
        ),
    )

    def run(self, args: NarrateArgs, ctx: ToolContext, backend: VoiceBackend) -> ToolOutput:
        ref = video(ctx, args.video_path)
        artifacts: list[NewArtifact] = []
        notes: list[str] = []
        parent = args.video_path
        if args.part == "highlight":
            at = None if args.time is None else clip.parse_time(args.time)
            found = find_highlight(ctx, ref, at, 3.0, 12.0)
            artifacts.append(
                NewArtifact(
                    kind=ArtifactKind.video,
                    content=found.cut.data,
                    parent=args.video_path,
                    stem="highlight",
                    ext="mp4",
                    meta={"start_s": found.cut.start, "end_s": found.cut.end, "reencoded": found.cut.reencoded},
                )
            )
            notes.append(f"highlight {found.cut.start:.2f} to {found.cut.end:.2f} s ({found.cut.note})")
            parent = "@0"
            known = found.signals.window(found.cut.start, found.cut.end)
            with clip.scratch_file(".mp4") as cut_file:
                cut_file.write_bytes(found.cut.data)
                narrated, script_data = _narrate(
                    ctx, cut_file, media.probe_video(cut_file), backend, args, notes, known
                )
        else:
            narrated, script_data = _narrate(ctx, ref.file, ref.info, backend, args, notes)
        artifacts.append(
            NewArtifact(
                kind=ArtifactKind.video,
                content=narrated,
                parent=parent,
                stem="narrated",
                ext="mp4",
                meta={"script": script_data["script"], "writer": script_data["writer"]},
            )
        )
        writer = "facts read out, no LLM" if script_data["writer"] == "none" else script_data["writer"]
        text = f'Voice-over ({writer}; voice {backend.name}): "{script_data["script"]}"'
        text += "".join(f" Note: {n}." for n in notes)
        return ToolOutput(text=text, artifacts=artifacts, data={**script_data, "notes": notes})


def _narrate(
    ctx: ToolContext,
    path: Path,
    info: media.VideoInfo,
    backend: VoiceBackend,
    args: NarrateArgs,
    notes: list[str],
    known: analysis.Signals | None = None,
) -> tuple[bytes, dict[str, object]]:
    """The narrated clip of ``path`` and what went into it. ``known``: the clip's signals when
    they were measured already (a highlight's window of its source's analysis)."""
    if known is None:
        signals = analysis.picture_signals(path, info.duration_s, info.fps)
        if info.has_audio:
            signals.loudness = analysis.loudness(path)
            heard = transcribe(ctx, path, info.has_audio)
            signals.speech = heard.segments
            if heard.note:
                notes.append(heard.note)
    else:
        signals = known
    speech = " ".join(text for _, _, text in signals.speech)
    facts = gather_facts(ctx, path, signals, info.has_audio, speech, args.style, args.request)
    notes += facts.notes
    script = write_script(ctx, facts)
    if script.note:
        notes.append(script.note)
    voice = backend.fitted(script.text, max(0.5, info.duration_s - LEAD_S - 0.2), ctx)
    if voice.note:
        notes.append(voice.note)
    data = mux_voiceover(path, voice, info.duration_s)
    return data, {
        "script": script.text,
        "writer": script.writer,
        "voice_seconds": round(voice.seconds, 2),
        "words_per_minute": voice.wpm,
        "transcript": speech,
        "facts": facts.lines(),
    }

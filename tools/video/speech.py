"""The speech in a clip, through the server's speech recognizer (faster-whisper on the embedded tier).

The recognizer is built from the tool's settings and model pool, so it shares the pooled
model (key ``speech.<backend>:<model>``) with the ``/speech`` route.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from igpt_server.errors import IgptError, InvalidInput, ToolUnavailable
from igpt_server.tooling.interface import ToolContext


@dataclass(frozen=True)
class Heard:
    """What was said: segments (start, end, text) in seconds, or why nothing could be heard."""

    segments: list[tuple[float, float, str]]
    note: str | None = None

    @property
    def text(self) -> str:
        return " ".join(text for _, _, text in self.segments)


def transcribe(ctx: ToolContext, file: Path, has_audio: bool) -> Heard:
    """The speech of ``file``'s first audio stream; never raises for silence or a missing model."""
    if not has_audio:
        return Heard([], "the clip has no sound")
    from igpt_server.speech import SpeechRecognizer
    from igpt_server.speech.audio import decode_audio

    recognizer = SpeechRecognizer(ctx.settings, ctx.pool)
    try:
        audio = decode_audio(file, max(ctx.settings.max_video_seconds, ctx.settings.max_audio_seconds))
        transcript = recognizer.transcribe_audio(audio)
    except ToolUnavailable as exc:
        return Heard([], f"no speech recognizer: {exc.message}")
    except InvalidInput as exc:
        if exc.code in ("no_speech", "empty_audio"):
            return Heard([], "no speech in the clip")
        raise
    except IgptError:
        raise
    return Heard([(s.start, s.end, s.text) for s in transcript.segments])

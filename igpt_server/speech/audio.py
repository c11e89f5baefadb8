"""Audio decoding for speech recognition, through PyAV (FFmpeg's libraries, no ffmpeg binary).

:func:`decode_audio` turns any clip the server accepts (wav, mp3, flac, ogg/vorbis or opus,
the webm/opus of browsers' MediaRecorder, m4a) into what both Whisper implementations eat:
a 1-D ``float32`` array of mono samples in [-1, 1] at :data:`SAMPLE_RATE` (16 kHz).

It also checks what a container header alone cannot: a clip without a declared duration
(MediaRecorder writes none) is measured while decoding and refused past the cap; a clip that
decodes to much less than its header declares is truncated and refused.

:func:`has_speech` decides whether a decoded clip holds any speech at all: an energy gate
(digital silence) and, where faster-whisper is installed, its bundled Silero voice-activity
model (ONNX, no download). Whisper models invent words ("You", "Thank you.") on silence and
noise, so a clip without speech never reaches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from igpt_server.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia

#: Whisper's input rate (samples per second)
SAMPLE_RATE = 16_000
#: peak amplitude under which a clip is silent (-60 dBFS)
SILENCE_PEAK = 1e-3
#: a clip is truncated when it decodes to less than this share of its declared duration...
_TRUNCATED_RATIO = 0.9
#: ...and at least this many seconds short of it (container durations are estimates)
_TRUNCATED_MIN_GAP_S = 0.5


def decode_audio(file: Path, max_seconds: float) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at 16 kHz, shape (n,), of the first audio stream of ``file``.

    Raises :class:`UnsupportedMedia` (415) when the file does not decode as audio,
    :class:`PayloadTooLarge` (413) past ``max_seconds`` and :class:`InvalidInput` (422) when the
    file is truncated or holds no samples.
    """
    import av

    try:
        with av.open(str(file), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedMedia("the file has no audio stream; send wav, mp3, flac, ogg or webm audio")
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            audio = _decode_stream(container, stream, max_seconds)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UnsupportedMedia(
            f"the audio does not decode ({exc}); send wav, mp3, flac, ogg or webm (opus) audio"
        ) from exc
    decoded = audio.size / SAMPLE_RATE
    if audio.size == 0:
        raise InvalidInput("the clip holds no audio samples; record again", code="empty_audio")
    if declared is not None and decoded < declared * _TRUNCATED_RATIO and declared - decoded > _TRUNCATED_MIN_GAP_S:
        raise InvalidInput(
            f"the file is truncated: its header declares {declared:.1f} s but only {decoded:.1f} s decode; "
            "upload the complete file",
            code="truncated_audio",
        )
    return audio


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None


def _decode_stream(container: Any, stream: Any, max_seconds: float) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    for frame in decoded_frames(container, stream):
        frame.pts = None  # resample by sample count; broken timestamps must not matter
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1)
            chunks.append(chunk)
            total += chunk.size
        if total > limit:
            raise PayloadTooLarge(
                f"the clip lasts over {max_seconds:.0f} s, the cap; cut it or raise IGPT_MAX_AUDIO_SECONDS",
                code="too_long",
            )
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return np.clip(audio.astype(np.float32, copy=False), -1.0, 1.0)


def decoded_frames(container: Any, stream: Any) -> Iterator[Any]:
    """Decoded frames; a packet with invalid data is skipped (a truncated tail shows as a short clip)."""
    import av

    frames = container.decode(stream)
    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


def has_speech(audio: np.ndarray) -> bool:
    """True when the 16 kHz mono clip holds speech: not silent, and voice activity where detectable."""
    if audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK:
        return False
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError:  # only openai-whisper installed: whisper's own no-speech filter decides
        return True
    return bool(get_speech_timestamps(audio, VadOptions()))

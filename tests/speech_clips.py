"""Speech clips made at test time: espeak-ng renderings, browser-style webm/opus, odd files.

espeak-ng is a Debian package (``apt-get install espeak-ng``); tests that need it are skipped
with that hint when the binary is absent. Everything else is written with PyAV.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: espeak-ng words per minute; its default (175) is too fast for Whisper tiny.en
ESPEAK_SPEED = 130


def speak(text: str, target: Path, speed: int = ESPEAK_SPEED) -> Path:
    """Render ``text`` with espeak-ng into a 22.05 kHz mono WAV at ``target``."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng); it renders the spoken test commands")
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(target), text], check=True, capture_output=True)
    return target


class _Sink(io.RawIOBase):
    """A write-only, non-seekable byte sink: the muxer cannot go back to write a duration."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, chunk: bytes) -> int:  # type: ignore[override]
        self.data += bytes(chunk)
        return len(chunk)


def to_browser_webm(source: Path, target: Path) -> Path:
    """Re-encode ``source`` as Chrome's MediaRecorder does: webm (Matroska), Opus at 48 kHz,
    written as a stream, so the file has no duration and no cues."""
    return reencode(source, target, "webm", "libopus", 48000)


def reencode(source: Path, target: Path, container: str, codec: str, rate: int) -> Path:
    """``source`` as mono ``codec`` at ``rate`` Hz in ``container``, muxed into a non-seekable
    stream as a recording browser does (Firefox: ogg/opus; Safari: mp4/aac)."""
    import av

    sink = _Sink()
    options = {"movflags": "frag_keyframe+empty_moov"} if container == "mp4" else {}
    with av.open(str(source)) as src, av.open(sink, "w", format=container, options=options) as out:
        stream: Any = out.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        frames = [f for frame in src.decode(audio=0) for f in resampler.resample(frame)]
        for frame in [*frames, *resampler.resample(None), None]:
            for packet in stream.encode(frame):
                out.mux(packet)
    target.write_bytes(bytes(sink.data))
    return target


def write_noise(target: Path, seconds: float, codec: str = "flac", rate: int = 8000, amplitude: float = 0.0) -> Path:
    """A mono clip of ``seconds`` of silence (or white noise of ``amplitude`` in [0, 1]), encoded
    with ``codec`` (``flac``, ``pcm_s16le``...) into the container ``target``'s suffix names."""
    import av

    rng = np.random.default_rng(0)
    chunk = rate * 10
    with av.open(str(target), "w") as out:
        stream: Any = out.add_stream(codec, rate=rate, layout="mono")
        left, pts = int(seconds * rate), 0
        while left > 0:
            n = min(chunk, left)
            samples = (rng.standard_normal(n) * amplitude * 32767).clip(-32768, 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, pts
            for packet in stream.encode(frame):
                out.mux(packet)
            left, pts = left - n, pts + n
        for packet in stream.encode(None):
            out.mux(packet)
    return target


def wav_with_codec_tag(target: Path, tag: int = 0x1234, seconds: float = 1.0) -> Path:
    """A WAV whose format tag names a codec no decoder knows (0x1234): valid RIFF, unsupported codec."""
    data = bytes(int(16000 * seconds) * 2)
    fmt = struct.pack("<HHIIHH", tag, 1, 16000, 32000, 2, 16)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    target.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    return target


def truncated(source: Path, target: Path, keep: float = 0.2) -> Path:
    """The first ``keep`` share of the bytes of ``source`` (an upload cut off mid-way)."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target

"""Text to speech and the voice-over mix.

**Speech**: a :class:`VoiceBackend` says a text at a relative speed. The embedded one is
:class:`EspeakBackend`: espeak-ng (Debian package ``espeak-ng``), offline, a formant voice:
clear and robotic, which the embedded tier accepts. The full tier's neural voice (VITS from
``<model_dir>/tts/``) is :class:`igpt_tools.video.tts.VitsVoiceBackend`. Either way the
speed is raised (up to :data:`MAX_SPEEDUP` times, :data:`MAX_WPM` words per minute for
espeak-ng) so the voice fits the clip; a script still too long is cut at the clip's end and
the result says so.

**Mix** (:func:`mux_voiceover`): the clip's video packets are copied (no re-encode); its
sound is decoded, lowered by :data:`DUCK_DB` and the voice added from :data:`LEAD_S`; the
mix is encoded as AAC 48 kHz mono. Audio is produced in step with the video packets, so
nothing is buffered beyond a packet's worth.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igpt_server.errors import ToolFailed
from igpt_server.settings import Settings
from igpt_server.tooling.interface import Backend, ToolContext
from igpt_tools.video.clip import scratch_file

#: output sample rate of the mixed sound
RATE = 48_000
#: the clip's own sound is lowered by this much under the voice (dB)
DUCK_DB = -14.0
#: the voice starts this many seconds into the clip
LEAD_S = 0.3
#: espeak-ng speaking rates (words per minute): normal and fastest allowed
WPM = 160
MAX_WPM = 240
#: the most a voice is sped up to fit a clip
MAX_SPEEDUP = MAX_WPM / WPM


@dataclass(frozen=True)
class Voice:
    """Spoken text: mono float32 samples in [-1, 1] at ``rate`` Hz, and what was done to fit it."""

    samples: np.ndarray
    rate: int
    wpm: int
    note: str | None = None

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


class VoiceBackend(Backend):
    """Text to speech for the ``narrate`` tool: :meth:`say` at a speed, :meth:`fitted` to a length."""

    def say(self, text: str, speed: float, ctx: ToolContext | None = None) -> Voice:
        """``text`` spoken ``speed`` times as fast as the voice's normal pace (1.0)."""
        raise NotImplementedError

    def fitted(self, text: str, seconds: float, ctx: ToolContext | None = None) -> Voice:
        """``text`` spoken to last at most ``seconds`` (faster if needed, then cut)."""
        voice = self.say(text, 1.0, ctx)
        if voice.seconds > seconds and seconds > 0:
            voice = self.say(text, min(MAX_SPEEDUP, 1.03 * voice.seconds / seconds), ctx)
        if voice.seconds > seconds:
            keep = max(0, int(seconds * voice.rate))
            fade = min(keep, voice.rate // 10)
            samples = voice.samples[:keep].copy()
            if fade:
                samples[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
            note = f"the voice-over ran {voice.seconds:.1f} s for a {seconds:.1f} s clip and was cut at the clip's end"
            return Voice(samples, voice.rate, voice.wpm, note)
        return voice


class EspeakBackend(VoiceBackend):
    """espeak-ng, the offline formant synthesizer (Debian package espeak-ng)."""

    name = "espeak-ng"
    requires = ("av", "cv2")

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is None and shutil.which("espeak-ng") is None:
            return "the voice-over needs espeak-ng: apt-get install espeak-ng (Debian/Ubuntu)"
        return reason

    def speak(self, text: str, wpm: int = WPM, voice: str = "en-us") -> Voice:
        """``text`` spoken at ``wpm`` words per minute."""
        with scratch_file(".wav") as target:
            done = subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(target), "--", text],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if done.returncode != 0:
                raise ToolFailed(f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace')[:200]}")
            samples, rate = _read_wav(target)
        return Voice(samples, rate, wpm)

    def say(self, text: str, speed: float, ctx: ToolContext | None = None) -> Voice:
        return self.speak(text, min(MAX_WPM, round(WPM * speed)))


def _read_wav(file: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(file), "rb") as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        raw = wav.readframes(wav.getnframes())
    if width != 2:
        raise ToolFailed(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit PCM")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1), rate


def _resampled(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at :data:`RATE` (linear interpolation; speech only)."""
    if rate == RATE or samples.size == 0:
        return samples.astype(np.float32)
    count = round(samples.size * RATE / rate)
    return np.interp(np.linspace(0, samples.size - 1, count), np.arange(samples.size), samples).astype(np.float32)


def _original_sound(file: Path) -> Iterator[np.ndarray]:
    """The clip's sound as mono float32 chunks at :data:`RATE` (nothing when it has none)."""
    import av

    with av.open(str(file), metadata_errors="ignore") as container:
        if not container.streams.audio:
            return
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            frame.pts = None
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1)


class _Mixer:
    """Produces the mixed sound sample by sample range: ducked original plus the voice."""

    def __init__(self, file: Path, voice: np.ndarray, total: int) -> None:
        self.original = _original_sound(file)
        self.pending = np.zeros(0, np.float32)
        self.voice = voice
        self.lead = int(LEAD_S * RATE)
        self.total = total
        self.done = 0
        self.gain = float(10 ** (DUCK_DB / 20))

    def take(self, until: int) -> np.ndarray:
        """Mixed samples from the last call's end up to sample ``until`` (at most the total)."""
        until = min(until, self.total)
        count = max(0, until - self.done)
        while self.pending.size < count:
            chunk = next(self.original, None)
            if chunk is None:
                break
            self.pending = np.concatenate([self.pending, chunk])
        base = np.zeros(count, np.float32)
        have = min(count, self.pending.size)
        base[:have] = self.pending[:have] * self.gain
        self.pending = self.pending[have:]
        start = self.done - self.lead
        lo, hi = max(0, start), min(self.voice.size, start + count)
        if hi > lo:
            base[lo - start : hi - start] += self.voice[lo:hi]
        self.done += count
        return np.clip(base, -1.0, 1.0)


def mux_voiceover(file: Path, voice: Voice, duration: float) -> bytes:
    """The clip ``file`` (video copied) with the voice over its lowered sound; mp4 bytes."""
    import av

    with scratch_file(".mp4") as target:
        with av.open(str(file), metadata_errors="ignore") as source, av.open(str(target), "w") as output:
            vin: Any = source.streams.video[0]
            vout = output.add_stream_from_template(vin)
            aout: Any = output.add_stream("aac", rate=RATE, layout="mono")
            mixer = _Mixer(file, _resampled(voice.samples, voice.rate), int(duration * RATE))
            written = 0
            for packet in source.demux(vin):
                if packet.pts is None or packet.size == 0:
                    continue
                written = _encode_audio(
                    output, aout, mixer.take(int(float(packet.pts * vin.time_base) * RATE)), written
                )
                packet.stream = vout
                output.mux(packet)
            written = _encode_audio(output, aout, mixer.take(mixer.total), written)
            for packet in aout.encode(None):
                output.mux(packet)
        return target.read_bytes()


def _encode_audio(output: Any, stream: Any, samples: np.ndarray, written: int) -> int:
    import av

    if samples.size == 0:
        return written
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = RATE
    frame.pts = written
    for packet in stream.encode(frame):
        output.mux(packet)
    return written + samples.size

"""What happens when in a clip: shot cuts, motion, loudness, speech; and the highlight they point to.

One streamed pass over the clip at :data:`ANALYSIS_SIDE` pixels gives, per frame, PySceneDetect's
``ContentDetector`` score (shot cuts: the HSV-and-edges change between frames, threshold 27,
shots of at least 0.6 s) and the motion (mean absolute difference of consecutive grey frames,
0..255); one pass over the audio gives the loudness per :data:`WINDOW_S` window (RMS, dBFS).
Speech segments come from the server's speech recognizer when the clip has sound and speech.

**Choosing the highlight** (:func:`choose`): candidates are the shots, split into windows of
at most ``max_s`` seconds. Each is scored by its share of the clip's motion, loudness and
speech (z-scores of the per-second means, weights :data:`WEIGHTS`); a clip without sound is
scored by the picture alone. With a picked time the highlight is the candidate around it,
grown to ``min_s`` with the neighbouring shots. The end is moved to the end of a sentence
that it would cut, when that keeps it under ``max_s``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from igpt_tools.video import clip

#: frames are analysed at this longer side (pixels)
ANALYSIS_SIDE = 160
#: loudness window (seconds)
WINDOW_S = 0.5
#: weights of motion, loudness and speech in a candidate's score
WEIGHTS = {"motion": 1.0, "loudness": 0.7, "speech": 0.7}
#: PySceneDetect ContentDetector threshold and shortest shot (s)
CUT_THRESHOLD = 27.0
MIN_SHOT_S = 0.6


@dataclass
class Signals:
    """Per-clip measurements; times in seconds from the clip's start."""

    duration: float
    cuts: list[float] = field(default_factory=list)
    motion: list[tuple[float, float]] = field(default_factory=list)  # (time, 0..255)
    loudness: list[tuple[float, float]] = field(default_factory=list)  # (window start, dBFS)
    speech: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, text)

    def window(self, start: float, end: float) -> Signals:
        """The measurements of ``[start, end)``, with times from ``start`` (for a cut of the clip)."""
        return Signals(
            duration=end - start,
            cuts=[c - start for c in self.cuts if start < c < end],
            motion=[(t - start, v) for t, v in self.motion if start <= t < end],
            loudness=[(t - start, v) for t, v in self.loudness if start <= t < end],
            speech=[
                (max(a, start) - start, min(b, end) - start, x) for a, b, x in self.speech if a < end and b > start
            ],
        )


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    score: float = 0.0

    @property
    def length(self) -> float:
        return self.end - self.start


def picture_signals(file: Path, duration: float, fps: float) -> Signals:
    """Shot cuts and motion from one streamed pass over the frames."""
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import ContentDetector

    detector = ContentDetector(threshold=CUT_THRESHOLD, min_scene_len=MIN_SHOT_S)
    signals = Signals(duration=duration)
    previous: np.ndarray | None = None
    for index, frame in enumerate(clip.read_frames(file, max_side=ANALYSIS_SIDE)):
        clip.step("looking for shot cuts and motion", frame.time, duration, index, every=25)
        bgr = np.ascontiguousarray(frame.image[:, :, ::-1])
        cuts = detector.process_frame(FrameTimecode(frame.time, fps=fps), bgr)
        signals.cuts += [float(c.seconds) for c in cuts if float(c.seconds) > 0]
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.int16)
        if previous is not None and previous.shape == grey.shape:
            signals.motion.append((frame.time, float(np.abs(grey - previous).mean())))
        previous = grey
    return signals


def loudness(file: Path) -> list[tuple[float, float]]:
    """(window start, RMS dBFS) per :data:`WINDOW_S` of the first audio stream; [] without sound."""
    import av

    out: list[tuple[float, float]] = []
    with av.open(str(file), metadata_errors="ignore") as container:
        if not container.streams.audio:
            return out
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        per_window = int(16000 * WINDOW_S)
        pending = np.zeros(0, np.float32)
        index = 0
        for frame in container.decode(audio=0):
            frame.pts = None
            for chunk in resampler.resample(frame):
                pending = np.concatenate([pending, chunk.to_ndarray().reshape(-1)])
                while pending.size >= per_window:
                    window, pending = pending[:per_window], pending[per_window:]
                    out.append((index * WINDOW_S, _dbfs(window)))
                    index += 1
        if pending.size:
            out.append((index * WINDOW_S, _dbfs(pending)))
    return out


def _dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20 * np.log10(max(rms, 1e-5))


def shots(signals: Signals) -> list[Span]:
    bounds = [0.0, *sorted(c for c in signals.cuts if 0 < c < signals.duration), signals.duration]
    return [Span(a, b) for a, b in itertools.pairwise(bounds) if b - a > 1e-3]


def _split(span: Span, max_s: float) -> list[Span]:
    if span.length <= max_s:
        return [span]
    count = int(np.ceil(span.length / max_s))
    step = span.length / count
    return [Span(span.start + i * step, span.start + (i + 1) * step) for i in range(count)]


def _mean_in(series: list[tuple[float, float]], start: float, end: float) -> float | None:
    values = [v for t, v in series if start <= t < end]
    return float(np.mean(values)) if values else None


def _speech_share(speech: list[tuple[float, float, str]], start: float, end: float) -> float:
    spoken = sum(max(0.0, min(end, b) - max(start, a)) for a, b, _ in speech)
    return spoken / max(end - start, 1e-6)


def _zscores(values: list[float | None]) -> list[float]:
    known = [v for v in values if v is not None]
    if len(known) < 2 or float(np.std(known)) < 1e-6:
        return [0.0 for _ in values]
    mean, std = float(np.mean(known)), float(np.std(known))
    return [0.0 if v is None else (v - mean) / std for v in values]


def score(signals: Signals, spans: list[Span]) -> list[Span]:
    """``spans`` with their eventfulness score (see the module docstring)."""
    motion = _zscores([_mean_in(signals.motion, s.start, s.end) for s in spans])
    loud = _zscores([_mean_in(signals.loudness, s.start, s.end) for s in spans])
    speech = _zscores([_speech_share(signals.speech, s.start, s.end) for s in spans])
    return [
        Span(s.start, s.end, WEIGHTS["motion"] * m + WEIGHTS["loudness"] * a + WEIGHTS["speech"] * p)
        for s, m, a, p in zip(spans, motion, loud, speech, strict=True)
    ]


def choose(signals: Signals, at: float | None, min_s: float, max_s: float) -> tuple[Span, str]:
    """The highlight and a sentence saying why it was chosen."""
    candidates = score(signals, [piece for shot in shots(signals) for piece in _split(shot, max_s)])
    if at is None:
        best = max(candidates, key=lambda s: s.score)
        reason = "the most eventful stretch (motion, loudness and speech against the rest of the clip)"
    else:
        best = next((s for s in candidates if s.start <= at < s.end), candidates[-1])
        reason = f"the shot around {at:.2f} s"
    span = _grow(best, candidates, min_s, signals.duration)
    span = _finish_sentence(span, signals.speech, max_s)
    return span, reason


def _grow(span: Span, candidates: list[Span], min_s: float, duration: float) -> Span:
    """Join the better neighbour until the span lasts ``min_s`` (or the whole clip)."""
    start, end = span.start, span.end
    while end - start < min_s - 1e-6 and (start > 0 or end < duration):
        before = next((c for c in reversed(candidates) if c.end <= start + 1e-6), None)
        after = next((c for c in candidates if c.start >= end - 1e-6), None)
        if after is not None and (before is None or after.score >= before.score):
            end = min(after.end, start + min_s) if after.length > min_s else after.end
        elif before is not None:
            start = max(before.start, end - min_s) if before.length > min_s else before.start
        else:
            break
    return Span(start, end, span.score)


def _finish_sentence(span: Span, speech: list[tuple[float, float, str]], max_s: float) -> Span:
    for a, b, _ in speech:
        if a < span.end < b and b - span.start <= max_s:
            return Span(span.start, b, span.score)
    return span

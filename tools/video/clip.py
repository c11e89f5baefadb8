"""Reading, writing and cutting clips, streamed frame by frame (PyAV, no ffmpeg binary).

Conventions of the video tools:

* a frame is a :class:`TimedFrame`: ``image`` HxWx3 uint8 RGB (display rotation applied) and
  ``time``, its presentation time in seconds from the clip's start. Frames are addressed by
  time, never by index, so variable-frame-rate clips (phones) work like constant-rate ones;
* nothing holds a whole clip: readers yield frames, :func:`transcode` encodes each edited
  frame as it comes and copies the audio packets through in their demuxed order;
* outputs are written to a temporary file and returned as bytes; the file is removed on
  success and on failure, so no half-written clip is ever left (:func:`scratch_file`).

Encoding: H.264 (libx264, yuv420p, CRF 20, preset veryfast) in mp4 for edited clips, VP9
with alpha (``yuva420p``) in webm for cut-outs. :func:`cut` copies the streams without
re-encoding when the start falls on a keyframe (or within :data:`KEYFRAME_SNAP_S` after
one, in which case the clip starts at that keyframe); otherwise it re-encodes and says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from igpt_server.errors import InvalidInput
from igpt_server.perception.timecode import parse_time as parse_time  # re-exported: the tools call clip.parse_time
from igpt_server.speech.audio import decoded_frames
from igpt_server.tooling import progress

#: a cut may start this many seconds before the asked start, at a keyframe, to avoid re-encoding
KEYFRAME_SNAP_S = 0.5
#: H.264 quality of re-encoded clips (lower is better; 18-23 is visually lossless to good)
CRF = 20
#: audio packets before this many seconds are dropped when a clip is cut
_EPS = 1e-3


@dataclass
class TimedFrame:
    """One decoded frame: HxWx3 uint8 RGB and its presentation time in seconds."""

    time: float
    image: np.ndarray


@dataclass(frozen=True)
class CutResult:
    """A cut clip: its bytes, the span it really covers, and whether it was re-encoded."""

    data: bytes
    start: float
    end: float
    reencoded: bool
    note: str


def check_time(time: float, duration: float) -> None:
    """422 ``time_out_of_range`` when ``time`` lies past the clip's end."""
    if time > duration + _EPS:
        raise InvalidInput(
            f"the clip lasts {duration:.2f} s, so there is no frame at {time:.2f} s; "
            f"pick a time from 0 to {duration:.2f}",
            code="time_out_of_range",
        )


@contextlib.contextmanager
def scratch_file(suffix: str) -> Iterator[Path]:
    """A temporary file that is removed when the block ends, whether it succeeded or not."""
    handle, name = tempfile.mkstemp(prefix="igpt_video_", suffix=suffix)
    os.close(handle)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _open(file: Path) -> Any:
    import av

    return av.open(str(file), metadata_errors="ignore")


def _rgb(frame: Any, max_side: int | None) -> np.ndarray:
    """HxWx3 uint8 RGB of a PyAV frame, scaled by libswscale so its longer side is at most
    ``max_side``, with the display rotation applied."""
    width, height = frame.width, frame.height
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
        image = frame.to_ndarray(format="rgb24", width=width, height=height)
    else:
        image = frame.to_ndarray(format="rgb24")
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def read_frames(
    file: Path, start: float = 0.0, end: float | None = None, max_side: int | None = None
) -> Iterator[TimedFrame]:
    """Frames whose time lies in ``[start, end)`` in order, decoded one at a time.

    Seeks to the keyframe at or before ``start`` and decodes from there; ``max_side`` scales
    frames down while converting (cheap). Broken packets are skipped.
    """
    import av

    with _open(file) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        for frame in decoded_frames(container, stream):
            if frame.pts is None:
                continue
            time = float(frame.pts * stream.time_base)
            if time + _EPS < start:
                continue
            if end is not None and time >= end - _EPS:
                return
            yield TimedFrame(time, _rgb(frame, max_side))
    del av


def frame_at(file: Path, time: float, max_side: int | None = None) -> TimedFrame:
    """The frame on screen at ``time``: the last frame whose time is at or before it."""
    import av

    shown: Any = None
    with _open(file) as container:
        stream = container.streams.video[0]
        container.seek(int(time / stream.time_base), stream=stream, backward=True)
        for frame in decoded_frames(container, stream):
            if frame.pts is None:
                continue
            if float(frame.pts * stream.time_base) > time + _EPS and shown is not None:
                break
            shown = frame
        if shown is None:
            raise InvalidInput(f"no frame decodes at {time:.2f} s; the file may be truncated", code="no_frame")
        del av
        return TimedFrame(float(shown.pts * stream.time_base), _rgb(shown, max_side))


def frames_backward(
    file: Path, start: float, end: float, max_side: int | None = None, chunk_s: float = 2.0
) -> Iterator[TimedFrame]:
    """Frames in ``[start, end)`` from the last to the first, decoded in chunks of ``chunk_s``
    seconds (each chunk is held, at ``max_side``, then yielded in reverse): bounded memory."""
    chunk_end = end
    while chunk_end > start + _EPS:
        chunk_start = max(start, chunk_end - chunk_s)
        chunk = list(read_frames(file, chunk_start, chunk_end, max_side))
        yield from reversed(chunk)
        chunk_end = chunk_start


def keyframe_times(file: Path) -> list[float]:
    """Presentation times of the video stream's keyframes (demuxed, not decoded)."""
    times: list[float] = []
    with _open(file) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.is_keyframe and packet.pts is not None:
                times.append(float(packet.pts * stream.time_base))
    return sorted(times)


# writing ------------------------------------------------------------------------------------


def step(message: str, time: float, duration: float | None, index: int, every: int = 10) -> None:
    """Between two frames: stop if the client went away (nothing is written to the session
    before a tool returns, and scratch files are removed), and every ``every`` frames tell
    the client how far ``message`` has come (the page shows it as progress)."""
    progress.check_cancelled()
    if index % every == 0:
        percent = None if not duration else round(min(100.0, 100.0 * time / duration), 1)
        progress.report("running", f"{message}: {time:.1f} s", percent=percent)


def _even(value: int) -> int:
    return value - value % 2


def _video_encoder(output: Any, source: Any, width: int, height: int, alpha: bool) -> Any:
    rate = source.average_rate or source.guessed_rate or Fraction(25)
    if alpha:
        out = output.add_stream("libvpx-vp9", rate=rate)
        out.pix_fmt = "yuva420p"
        out.options = {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    else:
        out = output.add_stream("libx264", rate=rate)
        out.pix_fmt = "yuv420p"
        out.options = {"crf": str(CRF), "preset": "veryfast"}
    out.width, out.height = width, height
    out.time_base = source.time_base
    out.codec_context.time_base = source.time_base
    return out


FrameEdit = Callable[[TimedFrame], np.ndarray]


def transcode(
    file: Path,
    edit: FrameEdit,
    *,
    alpha: bool = False,
    keep_audio: bool = True,
    start: float = 0.0,
    end: float | None = None,
    message: str = "re-encoding the clip",
    duration: float | None = None,
) -> bytes:
    """Re-encode ``file`` with every frame replaced by ``edit(frame)``; the clip's bytes.

    ``edit`` gets each :class:`TimedFrame` (full size, RGB) and returns HxWx3 uint8 RGB, or
    HxWx4 RGBA when ``alpha`` (then the output is webm/VP9 with alpha and has no sound).
    Otherwise the output is mp4/H.264 and the audio packets are copied unchanged (when
    ``keep_audio``). Frames keep their timestamps. Only the span ``[start, end)`` is kept.
    Progress is reported as ``message`` (percent of ``duration`` when given); a cancelled
    request stops between frames.
    """
    import av

    suffix = ".webm" if alpha else ".mp4"
    with scratch_file(suffix) as target:
        with _open(file) as source, av.open(str(target), "w") as output:
            vin = source.streams.video[0]
            vin.thread_type = "AUTO"
            ain = source.streams.audio[0] if (source.streams.audio and keep_audio and not alpha) else None
            width, height = _display_size(file)
            vout = _video_encoder(output, vin, _even(width), _even(height), alpha)
            aout = output.add_stream_from_template(ain) if ain is not None else None
            if start > 0:
                source.seek(int(start / vin.time_base), stream=vin, backward=True)
            encoded = 0
            offset = start
            streams = [vin] if ain is None else [vin, ain]
            for packet in source.demux(*streams):
                if packet.stream is ain:
                    _copy_audio(packet, aout, offset, end, output)
                    continue
                for frame in _decode_packet(packet):
                    if frame.pts is None:
                        continue
                    time = float(frame.pts * vin.time_base)
                    if time + _EPS < start or (end is not None and time >= end - _EPS):
                        continue
                    step(message, time - start, (end or duration or 0.0) - start, encoded)
                    picture = edit(TimedFrame(time, _rgb(frame, None)))
                    _encode(output, vout, picture, round((time - offset) / vin.time_base), alpha)
                    encoded += 1
            if not encoded:
                raise InvalidInput("no frame of the clip lies in the asked span", code="empty_span")
            for packet in vout.encode(None):
                output.mux(packet)
        return target.read_bytes()


def _display_size(file: Path) -> tuple[int, int]:
    """(width, height) of the frames as :func:`read_frames` yields them (rotation applied)."""
    first = next(read_frames(file), None)
    if first is None:
        raise InvalidInput("the video holds no decodable frame", code="no_frame")
    height, width = first.image.shape[:2]
    return width, height


def _decode_packet(packet: Any) -> list[Any]:
    import av

    try:
        return list(packet.decode())
    except av.error.InvalidDataError:
        return []


def _copy_audio(packet: Any, aout: Any, offset: float, end: float | None, output: Any) -> None:
    if packet.pts is None or packet.size == 0:
        return
    time = float(packet.pts * packet.time_base)
    if time + _EPS < offset or (end is not None and time >= end):
        return
    shift = round(offset / packet.time_base)
    packet.pts -= shift
    if packet.dts is not None:
        packet.dts -= shift
    packet.stream = aout
    output.mux(packet)


def _encode(output: Any, stream: Any, picture: np.ndarray, pts: int, alpha: bool) -> None:
    import av

    height, width = stream.height, stream.width
    picture = np.ascontiguousarray(picture[:height, :width])
    frame = av.VideoFrame.from_ndarray(picture, format="rgba" if alpha else "rgb24")
    frame = frame.reformat(format=stream.pix_fmt)
    frame.pts = pts
    frame.time_base = stream.time_base
    for packet in stream.encode(frame):
        output.mux(packet)


# cutting -------------------------------------------------------------------------------------


def cut(file: Path, start: float, end: float) -> CutResult:
    """The span ``[start, end)`` of ``file`` as a new mp4 clip.

    Without re-encoding (packets copied) when a keyframe lies at ``start`` or up to
    :data:`KEYFRAME_SNAP_S` before it: the clip then starts at that keyframe. Otherwise the
    span is decoded and re-encoded (H.264, audio copied), exact to the frame.
    """
    keyframes = keyframe_times(file)
    before = [k for k in keyframes if k <= start + _EPS]
    if before and start - before[-1] <= KEYFRAME_SNAP_S:
        begin = before[-1]
        data = _stream_copy(file, begin, end)
        note = "cut without re-encoding (streams copied)"
        if begin < start - _EPS:
            note += f"; starts at the keyframe at {begin:.2f} s, {start - begin:.2f} s before the asked start"
        return CutResult(data, begin, end, reencoded=False, note=note)
    data = transcode(file, lambda frame: frame.image, start=start, end=end)
    nearest = f"{before[-1]:.2f} s" if before else "none"
    note = (
        f"re-encoded (H.264): no keyframe within {KEYFRAME_SNAP_S} s before {start:.2f} s "
        f"(the nearest before it is at {nearest})"
    )
    return CutResult(data, start, end, reencoded=True, note=note)


def _stream_copy(file: Path, begin: float, end: float) -> bytes:
    import av

    with scratch_file(".mp4") as target:
        with _open(file) as source, av.open(str(target), "w") as output:
            inputs = [source.streams.video[0], *source.streams.audio[:1]]
            outputs = {s.index: output.add_stream_from_template(s) for s in inputs}
            source.seek(int(begin / inputs[0].time_base), stream=inputs[0], backward=True)
            for packet in source.demux(*inputs):
                if packet.pts is None or packet.size == 0:
                    continue
                time = float(packet.pts * packet.time_base)
                if time >= end - _EPS or time + _EPS < begin:
                    continue
                shift = round(begin / packet.time_base)
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = outputs[packet.stream.index]
                output.mux(packet)
        return target.read_bytes()

"""Decoding and encoding of media files: uploads are checked here, tools read through here.

Conventions used across the project:

* image: ``np.ndarray`` HxWx3 ``uint8`` RGB, EXIF orientation applied (as browsers show it);
* mask: ``np.ndarray`` HxW ``bool`` (True = selected); stored as a 0/255 single-channel PNG;
* RGBA cut-out (material): HxWx4 ``uint8``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from igpt_server.errors import InvalidInput, UnsupportedMedia

MediaKind = Literal["image", "audio", "video"]
#: PyAV container format -> file extension of the audio/video formats this server accepts
_AV_FORMATS = {
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "ogg": "ogg",
    "matroska": "webm",
    "mov": "mp4",
    "aac": "aac",
    "avi": "avi",
}
_IMAGE_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tif"}


@dataclass(frozen=True)
class MediaInfo:
    """What an uploaded file turned out to be."""

    kind: MediaKind
    ext: str
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    #: for a video: what :func:`probe_video` found (frame rate, audio, codecs)
    video: VideoInfo | None = None


def probe_image(file: Path, max_pixels: int) -> MediaInfo:
    """Check that ``file`` decodes as an image of at most ``max_pixels`` pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                width, height = _oriented_size(img)
                if width * height > max_pixels:
                    raise InvalidInput(
                        f"image is {width}x{height} = {width * height} pixels, over the cap of "
                        f"{max_pixels}; downscale it or raise IGPT_MAX_IMAGE_PIXELS",
                        code="too_many_pixels",
                    )
                fmt = img.format or ""
                img.load()
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise InvalidInput(f"image has too many pixels: {exc}", code="too_many_pixels") from exc
        raise UnsupportedMedia(
            f"the file does not decode as an image ({exc}); send PNG, JPEG, WebP, BMP, GIF or TIFF"
        ) from exc
    if fmt not in _IMAGE_EXT:
        raise UnsupportedMedia(f"image format {fmt or 'unknown'} is not supported; send PNG or JPEG")
    return MediaInfo(kind="image", ext=_IMAGE_EXT[fmt], width=width, height=height)


def probe_av(file: Path, max_seconds: float) -> MediaInfo:
    """Check that ``file`` decodes as audio or video (PyAV); reject clips over ``max_seconds``."""
    import av  # PyAV comes with faster-whisper

    try:
        with av.open(str(file)) as container:
            has_video = any(s.type == "video" and not _is_cover_art(s) for s in container.streams)
            audio = [s for s in container.streams if s.type == "audio"]
            if not has_video and not audio:
                raise UnsupportedMedia("the file has no audio or video stream")
            duration = _duration_seconds(container)
            fmt = container.format.name.split(",")[0]
            if fmt not in _AV_FORMATS:
                raise UnsupportedMedia(f"container format {fmt!r} is not an audio or video format")
            video = [s for s in container.streams if s.type == "video" and not _is_cover_art(s)]
            _decode_first_frame(container, video[0] if video else audio[0])
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise UnsupportedMedia(
            f"the file does not decode as audio or video ({exc}); send wav, mp3, flac, ogg, webm or mp4"
        ) from exc
    if duration is not None and duration > max_seconds:
        raise _too_long(duration, max_seconds)
    kind: MediaKind = "video" if has_video else "audio"
    return MediaInfo(kind=kind, ext=_av_ext(fmt), duration_s=duration)


def _too_long(duration: float, max_seconds: float) -> Exception:
    from igpt_server.errors import PayloadTooLarge

    return PayloadTooLarge(
        f"the clip lasts {duration:.0f} s, over the cap of {max_seconds:.0f} s; cut it or raise IGPT_MAX_AUDIO_SECONDS",
        code="too_long",
    )


def _is_cover_art(stream: object) -> bool:
    disposition = getattr(stream, "disposition", None)
    return bool(disposition is not None and "attached_pic" in str(disposition).lower())


def _duration_seconds(container: object) -> float | None:
    duration = getattr(container, "duration", None)
    return None if duration is None else duration / 1_000_000


def _decode_first_frame(container: object, stream: object) -> None:
    for _frame in container.decode(stream):  # type: ignore[attr-defined]
        return
    raise UnsupportedMedia("the stream holds no decodable frame (empty or truncated file)")


def _av_ext(fmt: str) -> str:
    return {
        "matroska": "webm",
        "mov": "mp4",
        "ogg": "ogg",
        "wav": "wav",
        "mp3": "mp3",
        "flac": "flac",
        "webm": "webm",
        "mp4": "mp4",
        "aac": "aac",
    }.get(fmt, fmt[:5] or "bin")


def probe_upload(
    file: Path, declared: MediaKind | None, max_pixels: int, max_seconds: float, video: VideoCaps | None = None
) -> MediaInfo:
    """Identify an upload as image, audio or video; the bytes must decode as that kind.

    With ``video`` caps, a video is checked against them (duration, frame pixels) instead of
    the audio cap ``max_seconds``, and its :class:`VideoInfo` comes back in ``info.video``.
    """
    if declared == "image":
        return probe_image(file, max_pixels)
    if declared in ("audio", "video"):
        info = _probe_av_capped(file, max_seconds, video)
        if info.kind != declared:
            raise UnsupportedMedia(f"the file is {info.kind}, not {declared}")
        return info
    try:
        return probe_image(file, max_pixels)
    except UnsupportedMedia:
        pass
    try:
        return _probe_av_capped(file, max_seconds, video)
    except UnsupportedMedia as exc:
        raise UnsupportedMedia(
            "the file is neither an image nor audio nor video that this server decodes; "
            "send PNG/JPEG/WebP images, wav/mp3/flac/ogg/webm audio or mp4/webm video"
        ) from exc


# video -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoCaps:
    """Upload caps of a video: longest duration (413 past it) and largest frame (422 past it)."""

    max_seconds: float
    max_pixels: int


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, from its container header and stream parameters (PyAV).

    ``fps`` is the stream's average frame rate; ``variable_rate`` is true when it differs from
    the nominal rate by more than 1 % (phone clips): the video tools address frames by their
    presentation time, never by index, so both kinds work alike. ``rotation`` is the display
    rotation in degrees that players apply (0, 90, 180, 270).
    """

    width: int
    height: int
    duration_s: float
    fps: float
    has_audio: bool
    video_codec: str
    audio_codec: str | None = None
    variable_rate: bool = False
    rotation: int = 0

    def meta(self) -> dict[str, object]:
        """The artifact metadata of a video (JSON-ready)."""
        return {
            "duration_s": round(self.duration_s, 3),
            "fps": round(self.fps, 3),
            "has_audio": self.has_audio,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "variable_rate": self.variable_rate,
            "rotation": self.rotation,
        }


def probe_video(file: Path, caps: VideoCaps | None = None) -> VideoInfo:
    """Probe a video file; with ``caps``, refuse a clip over its duration (413 ``too_long``) or
    its frame pixels (422 ``too_many_pixels``). A file without a video stream is a 415.

    The duration comes from the header; when the header has none (MediaRecorder's webm), the
    packets are demuxed (not decoded) to find the last timestamp.
    """
    import av

    try:
        with av.open(str(file), metadata_errors="ignore") as container:
            streams = [s for s in container.streams.video if not _is_cover_art(s)]
            if not streams:
                raise UnsupportedMedia("the file has no video stream; send mp4, webm, mov or mkv video")
            stream = streams[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            if caps is not None and width * height > caps.max_pixels:
                raise InvalidInput(
                    f"the video is {width}x{height} = {width * height} pixels per frame, over the cap of "
                    f"{caps.max_pixels}; downscale it (e.g. to 1920x1080) or raise IGPT_MAX_VIDEO_PIXELS",
                    code="too_many_pixels",
                )
            duration = _video_duration(container, stream)
            audio = container.streams.audio
            info = VideoInfo(
                width=width,
                height=height,
                duration_s=duration,
                fps=_frame_rate(stream),
                has_audio=bool(audio),
                video_codec=str(stream.codec_context.name),
                audio_codec=str(audio[0].codec_context.name) if audio else None,
                variable_rate=_variable_rate(stream),
                rotation=_rotation(container, stream),
            )
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise UnsupportedMedia(f"the file does not decode as video ({exc}); send mp4, webm, mov or mkv") from exc
    if caps is not None and duration > caps.max_seconds:
        from igpt_server.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"the video lasts {duration:.0f} s, over the cap of {caps.max_seconds:.0f} s; "
            "cut it or raise IGPT_MAX_VIDEO_SECONDS",
            code="too_long",
        )
    return info


def upload_meta(info: MediaInfo) -> dict[str, object]:
    """The artifact metadata of an upload: a video's probe, an audio clip's duration."""
    if info.video is not None:
        return info.video.meta()
    return {} if info.duration_s is None else {"duration_s": info.duration_s}


def _probe_av_capped(file: Path, max_seconds: float, video: VideoCaps | None) -> MediaInfo:
    """:func:`probe_av`, with a video checked against its own caps when they are given."""
    if video is None:
        return probe_av(file, max_seconds)
    info = probe_av(file, float("inf"))
    if info.kind == "audio":
        if info.duration_s is not None and info.duration_s > max_seconds:
            raise _too_long(info.duration_s, max_seconds)
        return info
    details = probe_video(file, video)
    # Matroska holding anything but VP8/VP9/AV1 (H.264 from a camera) is .mkv, not .webm
    ext = "mkv" if info.ext == "webm" and details.video_codec not in ("vp8", "vp9", "av1", "libdav1d") else info.ext
    return MediaInfo(
        kind="video",
        ext=ext,
        width=details.width,
        height=details.height,
        duration_s=details.duration_s,
        video=details,
    )


def _video_duration(container: object, stream: object) -> float:
    declared = getattr(container, "duration", None)
    if declared:
        return float(declared) / 1_000_000
    stream_duration = getattr(stream, "duration", None)
    time_base = getattr(stream, "time_base", None)
    if stream_duration and time_base:
        return float(stream_duration * time_base)
    last = 0.0
    for packet in container.demux(stream):  # type: ignore[attr-defined]
        if packet.pts is not None and packet.time_base is not None:
            last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return last


def _frame_rate(stream: object) -> float:
    for name in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, name, None)
        if rate:
            return float(rate)
    return 25.0


def _variable_rate(stream: object) -> bool:
    average = getattr(stream, "average_rate", None)
    nominal = getattr(stream, "base_rate", None) or getattr(stream, "guessed_rate", None)
    if not average or not nominal:
        return False
    return abs(float(average) - float(nominal)) > 0.01 * float(nominal)


def _rotation(container: object, stream: object) -> int:
    """Display rotation in degrees counterclockwise (0, 90, 180, 270) of the first frame's
    display matrix (phones record portrait clips as rotated landscape); decoding that frame
    also proves the stream decodes (415 otherwise)."""
    container.seek(0)  # type: ignore[attr-defined]
    for frame in container.decode(stream):  # type: ignore[attr-defined]
        return round(float(getattr(frame, "rotation", 0) or 0) / 90) * 90 % 360
    raise UnsupportedMedia("the video stream holds no decodable frame (empty or truncated file)")


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    width, height = img.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# reading and writing pictures ------------------------------------------------------------


def read_image_rgb(file: Path) -> np.ndarray:
    """HxWx3 uint8 RGB, EXIF orientation applied."""
    with Image.open(file) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB")).copy()


def read_mask(file: Path) -> np.ndarray:
    """HxW bool: pixels brighter than 127 (or opaque, for RGBA) are selected."""
    with Image.open(file) as img:
        if img.mode in ("RGBA", "LA"):
            return np.asarray(img.getchannel("A")) > 127
        return np.asarray(img.convert("L")) > 127


def read_rgba(file: Path) -> np.ndarray:
    """HxWx4 uint8 RGBA."""
    with Image.open(file) as img:
        return np.asarray(img.convert("RGBA")).copy()


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an HxW bool/uint8 mask (stored as 0/255), HxWx3 RGB or HxWx4 RGBA image."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 or bool pixels, got {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


# outputs that keep their input's family ---------------------------------------------------

#: input extension -> (PIL format, stored extension) of an RGB tool output made from it
_OUTPUT_FAMILY = {"jpg": ("JPEG", "jpg"), "jpeg": ("JPEG", "jpg"), "webp": ("WEBP", "webp")}


def encode_like(array: np.ndarray, input_ext: str, quality: int = 93) -> tuple[bytes, str]:
    """Encode an HxWx3 uint8 RGB tool output in its input's family: ``(bytes, ext)``.

    A JPEG input gives a JPEG (``quality``, 4:4:4 chroma, so edges of edits stay crisp), a WebP
    input a lossy WebP of the same quality; anything else (PNG, BMP, GIF, TIFF), and any array
    that is not 3-channel RGB (a mask, an RGBA cut-out), a PNG. So a 270 KB photo does not
    become a 2 MB PNG at every edit.
    """
    family = _OUTPUT_FAMILY.get(input_ext.lower().lstrip("."))
    if family is None or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        return encode_png(array), "png"
    fmt, ext = family
    buffer = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=0, optimize=True)
    else:
        Image.fromarray(array).save(buffer, format="WEBP", quality=quality, method=4)
    return buffer.getvalue(), ext

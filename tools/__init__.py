"""The vision tools (import package ``igpt_tools``), one module per tool with its backends.

Tools never import the web layer. Heavy libraries (torch, easyocr, diffusers...) are
imported lazily inside backends, so listing tools stays cheap.
"""

from __future__ import annotations

from igpt_server.settings import Settings
from igpt_server.tooling.interface import Tool


def builtin_tools(settings: Settings) -> list[Tool]:
    """Every tool of this server, with its backends in order of preference."""
    from igpt_tools import ocr, text_mask

    reader = ocr.EasyOcrBackend()  # one reader and word cache for reading and selecting text
    tools: list[Tool] = [
        ocr.OcrTool([reader]),
        text_mask.TextMaskTool([reader]),
    ]
    tools += _diffusion_tools()
    tools += _perception_tools()
    tools += _editing_tools()
    tools += _video_tools()
    return tools


def _video_tools() -> list[Tool]:
    """frame, highlight, track, narrate, transcribe (igpt_tools.video)."""
    from igpt_tools.video import video_tools

    return video_tools()


def _editing_tools() -> list[Tool]:
    """remove, move (an inpaint backend fills the hole: SD first), extract, compose, sketch,
    crop, adjust, invert_selection."""
    from igpt_tools import adjust, compose, crop, extract, inpaint, invert, move, remove, sketch

    return [
        remove.RemoveTool([inpaint.SdInpaintBackend(), remove.OpenCvInpaintBackend()]),
        move.MoveTool([inpaint.SdInpaintBackend(), remove.OpenCvInpaintBackend()]),
        extract.ExtractTool([extract.OpenCvBackend()]),
        compose.ComposeTool([extract.OpenCvBackend()]),
        sketch.SketchTool([extract.OpenCvBackend()]),
        crop.CropTool([extract.OpenCvBackend()]),
        adjust.AdjustTool([extract.OpenCvBackend()]),
        invert.InvertSelectionTool([extract.OpenCvBackend()]),
    ]


def _perception_tools() -> list[Tool]:
    """segment (SAM first), segment_everything, ground, ground_and_segment, vqa, caption.

    One SAM backend is shared, so all of them share its image-embedding cache.
    """
    from igpt_tools import ground, sam, sam2, segment, vqa

    sam_backend = sam.SamSegmentBackend()
    sam2_backend = sam2.Sam2SegmentBackend()  # SAM 2 first: it answers when both are present
    grounding = ground.GroundingDinoBackend()
    vision: list[vqa.VisionBackend] = [vqa.VlmBackend(), vqa.OpenAiVisionBackend()]
    return [
        segment.SegmentTool([sam2_backend, sam_backend, segment.HedSegmentBackend(), segment.OpenCvSegmentBackend()]),
        sam.SegmentEverythingTool([sam2_backend, sam_backend]),
        ground.GroundTool([grounding]),
        ground.GroundAndSegmentTool(
            [
                ground.GroundAndSam2Backend(grounding, sam2_backend),
                ground.GroundAndSegmentBackend(grounding, sam_backend),
            ]
        ),
        vqa.VqaTool(vision),
        vqa.CaptionTool(vision),
    ]


def _diffusion_tools() -> list[Tool]:
    """replace and generate (Stable Diffusion inpainting, ControlNet); no embedded backend."""
    from igpt_tools import generate, inpaint, replace

    return [
        replace.ReplaceTool([inpaint.SdInpaintBackend()]),
        generate.GenerateTool([generate.SdGenerateBackend()]),
    ]

"""The vision tools (import package ``igpt_tools``), one module per tool with its backends.

Tools never import the web layer. Heavy libraries (torch, easyocr, diffusers...) are
imported lazily inside backends, so listing tools stays cheap.
"""

from __future__ import annotations

from igpt_server.settings import Settings
from igpt_server.tooling.interface import Tool


def builtin_tools(settings: Settings) -> list[Tool]:
    """Every tool of this server, with its backends in order of preference."""
    from igpt_tools import ocr

    tools: list[Tool] = [
        ocr.OcrTool([ocr.EasyOcrBackend()]),
    ]
    tools += _diffusion_tools()
    tools += _perception_tools()
    tools += _editing_tools()
    return tools


def _editing_tools() -> list[Tool]:
    """remove, move (an inpaint backend fills the hole: SD first), extract, compose, sketch."""
    from igpt_tools import compose, extract, inpaint, move, remove, sketch

    return [
        remove.RemoveTool([inpaint.SdInpaintBackend(), remove.OpenCvInpaintBackend()]),
        move.MoveTool([inpaint.SdInpaintBackend(), remove.OpenCvInpaintBackend()]),
        extract.ExtractTool([extract.OpenCvBackend()]),
        compose.ComposeTool([extract.OpenCvBackend()]),
        sketch.SketchTool([extract.OpenCvBackend()]),
    ]


def _perception_tools() -> list[Tool]:
    """segment (SAM first), segment_everything, ground, ground_and_segment, vqa, caption.

    One SAM backend is shared, so all of them share its image-embedding cache.
    """
    from igpt_tools import ground, sam, segment, vqa

    sam_backend = sam.SamSegmentBackend()
    grounding = ground.GroundingDinoBackend()
    vision: list[vqa.VisionBackend] = [vqa.VlmBackend(), vqa.OpenAiVisionBackend()]
    return [
        segment.SegmentTool([sam_backend, segment.OpenCvSegmentBackend()]),
        sam.SegmentEverythingTool([sam_backend]),
        ground.GroundTool([grounding]),
        ground.GroundAndSegmentTool([ground.GroundAndSegmentBackend(grounding, sam_backend)]),
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

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
    return tools

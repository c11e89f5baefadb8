"""The tool interface, the registry that picks backends, and the runner that calls tools."""

from igpt_server.tooling.interface import (
    ArtifactRef,
    AudioPath,
    Backend,
    ImagePath,
    MaskPath,
    MaterialPath,
    NewArtifact,
    SketchPath,
    Tool,
    ToolArgs,
    ToolContext,
    ToolOutput,
)

__all__ = [
    "ArtifactRef",
    "AudioPath",
    "Backend",
    "ImagePath",
    "MaskPath",
    "MaterialPath",
    "NewArtifact",
    "SketchPath",
    "Tool",
    "ToolArgs",
    "ToolContext",
    "ToolOutput",
]

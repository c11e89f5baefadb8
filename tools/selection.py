"""The active selection, as the editing tools (crop, move...) take it when no mask_path is given."""

from __future__ import annotations

from igpt_server.errors import InvalidInput
from igpt_server.tooling.interface import ToolContext


def active_selection(ctx: ToolContext, image_path: str) -> str:
    """The active selection's path when it is a mask of ``image_path``; otherwise a 422 with the fix."""
    active = ctx.state().active_mask
    if active is None or ctx.artifact(active).parent != image_path:
        raise InvalidInput(
            f"no object is selected on {image_path}; select it first (click it) or give mask_path",
            code="no_selection",
        )
    return active

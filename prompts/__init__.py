"""The controller's prompt texts (import package ``igpt_prompts``), loaded from files."""

from __future__ import annotations

from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.md``; a missing prompt names the ones that exist."""
    file = PROMPTS_DIR / f"{name}.md"
    if not file.is_file():
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.md"))
        raise FileNotFoundError(f"no prompt {name!r} in {PROMPTS_DIR}; known prompts: {known}")
    return file.read_text(encoding="utf-8")

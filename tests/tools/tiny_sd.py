"""A model directory of tiny random-weight diffusion checkpoints, built once per test session.

Layout (the one the server reads, see tools/inpaint.py and tools/generate.py):
``sd-inpaint/``, ``sd/``, ``controlnet/{scribble,canny,hed}/`` (diffusers folders written with
``save_pretrained``) and ``annotators/ControlNetHED.pth`` (random controlnet-aux HED). No depth
or pose weights, so those conditions exercise the "what is missing" path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igpt_server.media import encode_png
from igpt_server.store import ArtifactKind, SessionStore

_built: dict[str, Path] = {}


def tiny_model_dir(factory: pytest.TempPathFactory) -> Path:
    """The shared tiny model directory (built on first use, about 3 s)."""
    if "root" not in _built:
        from igpt_tools.sd_random import save_controlnet, save_hed, save_pipeline

        root = factory.mktemp("models")
        save_pipeline(root / "sd-inpaint", inpaint=True, seed=1)
        save_pipeline(root / "sd", inpaint=False, seed=2)
        for index, condition in enumerate(("scribble", "canny", "hed")):
            save_controlnet(root / "controlnet" / condition, seed=10 + index)
        save_hed(root / "annotators")
        _built["root"] = root
    return _built["root"]


def add_sketch(store: SessionStore, session_id: str, strokes: np.ndarray, parent: str | None = None) -> str:
    """Store an HxW bool stroke canvas as a sketch artifact (what the sketch gesture makes)."""
    height, width = strokes.shape
    artifact = store.add_artifact(
        session_id,
        ArtifactKind.sketch,
        encode_png(strokes),
        ext="png",
        stem="sketch",
        parent=parent,
        tool="test",
        width=width,
        height=height,
    )
    return artifact.path

"""The store-backed :class:`~igpt_server.tooling.interface.ToolContext`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igpt_server import media
from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.store import Artifact, ArtifactKind, SessionState, SessionStore


@dataclass
class StoreToolContext:
    """A tool's read-only view of one session; every path is looked up in the store."""

    session_id: str
    store: SessionStore
    settings: Settings
    pool: ModelPool

    def state(self) -> SessionState:
        return self.store.get(self.session_id)

    def artifact(self, path: str, kinds: tuple[ArtifactKind, ...] = ()) -> Artifact:
        return self.store.artifact(self.session_id, path, kinds)

    def file(self, path: str) -> Path:
        return self.store.artifact_file(self.session_id, path)

    def read_image(self, path: str) -> np.ndarray:
        self.artifact(path, (ArtifactKind.image, ArtifactKind.material, ArtifactKind.sketch))
        return media.read_image_rgb(self.file(path))

    def read_mask(self, path: str) -> np.ndarray:
        self.artifact(path, (ArtifactKind.mask, ArtifactKind.sketch))
        return media.read_mask(self.file(path))

    def read_rgba(self, path: str) -> np.ndarray:
        self.artifact(path, (ArtifactKind.material, ArtifactKind.image))
        return media.read_rgba(self.file(path))

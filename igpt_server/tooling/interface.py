"""What a tool is.

A tool has a name, a description written for the LLM, a pydantic args model (the JSON
schema that the LLM and REST callers see), the gestures it accepts, and an ordered list of
backends, best first. The registry picks the first available backend; the runner validates
the arguments, calls :meth:`Tool.run` and persists what it returns.

Tools never write to the session themselves: they return :class:`NewArtifact` values and the
runner stores them only when the tool succeeded, so a failing tool leaves the session as it
was. Artifact arguments are typed (:data:`ImagePath`, :data:`MaskPath`, ...): the
:class:`ArtifactRef` marker tells the runner and the auxiliary control which kind of
artifact a field needs.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from igpt_server.store.artifacts import ARTIFACT_PATH_PATTERN, Artifact, ArtifactKind, SessionState

if TYPE_CHECKING:
    from igpt_server.models.pool import ModelPool
    from igpt_server.settings import Settings


@dataclass(frozen=True)
class ArtifactRef:
    """Marks an args field as a reference to a session artifact of one of ``kinds``."""

    kinds: tuple[ArtifactKind, ...]


def _path_field(kind: ArtifactKind, description: str) -> Any:
    return Field(description=description, pattern=ARTIFACT_PATH_PATTERN, max_length=120)


ImagePath = Annotated[
    str,
    ArtifactRef((ArtifactKind.image,)),
    _path_field(ArtifactKind.image, "an image artifact path, e.g. image/3f9a0c1d_photo.png"),
]
MaskPath = Annotated[
    str,
    ArtifactRef((ArtifactKind.mask,)),
    _path_field(ArtifactKind.mask, "a mask artifact path, e.g. mask/77aa01bc_mask.png"),
]
SketchPath = Annotated[
    str,
    ArtifactRef((ArtifactKind.sketch,)),
    _path_field(ArtifactKind.sketch, "a sketch artifact path, e.g. sketch/0b1c2d3e_sketch.png"),
]
MaterialPath = Annotated[
    str,
    ArtifactRef((ArtifactKind.material,)),
    _path_field(ArtifactKind.material, "a material (RGBA cut-out) path, e.g. material/5e6f7a8b_cutout.png"),
]
AudioPath = Annotated[
    str,
    ArtifactRef((ArtifactKind.audio, ArtifactKind.video)),
    _path_field(ArtifactKind.audio, "an audio artifact path, e.g. audio/9a8b7c6d_clip.wav"),
]
VideoPath = Annotated[
    str,
    ArtifactRef((ArtifactKind.video,)),
    _path_field(ArtifactKind.video, "a video artifact path, e.g. video/4d5e6f70_clip.mp4"),
]


class ToolArgs(BaseModel):
    """Base of every args model: unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")


Role = Literal["image", "selection", "material", "none"]


@dataclass
class NewArtifact:
    """A file a tool made, stored by the runner when the tool succeeds.

    ``content`` is an array (HxWx3 uint8 RGB image, HxW bool mask, HxWx4 RGBA) encoded as
    PNG, or ready bytes with their ``ext``. ``role`` says what it becomes in the session:
    the active image, the active selection, a picked material, or nothing. ``parent`` is an
    artifact path, or ``"@N"`` for the N-th artifact of the same output (e.g. the mask of a
    new image returned beside it).
    """

    kind: ArtifactKind
    content: np.ndarray | bytes
    parent: str | None
    stem: str
    role: Role = "none"
    ext: str = "png"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolOutput:
    """What a tool returns: a text for the user and the LLM, new artifacts, JSON data."""

    text: str
    artifacts: list[NewArtifact] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class ToolContext(Protocol):
    """A tool's view of its session, the settings and the model pool."""

    session_id: str
    settings: Settings
    pool: ModelPool

    def state(self) -> SessionState: ...

    def artifact(self, path: str, kinds: tuple[ArtifactKind, ...] = ()) -> Artifact: ...

    def file(self, path: str) -> Path: ...

    def read_image(self, path: str) -> np.ndarray:
        """HxWx3 uint8 RGB of an image (or the RGB of a material)."""
        ...

    def read_mask(self, path: str) -> np.ndarray:
        """HxW bool of a mask or sketch artifact."""
        ...

    def read_rgba(self, path: str) -> np.ndarray:
        """HxWx4 uint8 of a material."""
        ...


class Backend:
    """One way to run a tool. Subclasses name the packages and files they need.

    :meth:`unavailable_reason` must be cheap (no model loading, no heavy import): it is
    called at start-up for ``/api/tools``.
    """

    name: ClassVar[str] = "backend"
    #: import names that must be installed, e.g. ("easyocr",)
    requires: ClassVar[tuple[str, ...]] = ()
    #: the pip extra that installs them, named in the reason when missing
    extra: ClassVar[str] = "embedded"
    #: the model-pool families this backend loads (``/api/tools`` shows their state)
    model_families: ClassVar[tuple[str, ...]] = ()

    def unavailable_reason(self, settings: Settings) -> str | None:
        """``None`` when usable, otherwise what is missing and how to fix it."""
        missing = [name for name in self.requires if importlib.util.find_spec(name) is None]
        if missing:
            return (
                f"backend {self.name!r} needs the Python packages {', '.join(missing)}; "
                f"install them with: pip install '.[{self.extra}]'"
            )
        return None


@dataclass(frozen=True)
class ToolWords:
    """How people ask for a tool; the controller's lexicon is built from these.

    Entries are lower-case lemmas or multi-word phrases ("crop", "zoom in on", "get rid of").
    ``verbs`` ask for the tool's action, ``nouns`` name it ("blur", "transcript"),
    ``examples`` are whole requests (documentation and tests, never matched literally).

    Added for the controller's lexicon (all optional):

    * ``senses``: WordNet 3.0 synset names (``"erase.v.02"``) whose lemmas also ask for the
      tool; the lexicon expands them from ``igpt_server/controller/wordnet_senses.json``
      (regenerate it with ``python -m igpt_server.controller.wordnet`` after adding one);
    * ``roles``: ``(field, role)`` pairs naming what the words fill in an args field:
      ``"prompt"`` (what to put there), ``"query"`` (the object named), ``"question"``,
      ``"offset"`` (dx/dy from a direction), ``"scale"`` (bigger/smaller), ``"choice"`` (a
      ``Literal`` field whose value the words name: "blur", "darken", "background").
    """

    verbs: tuple[str, ...] = ()
    nouns: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    senses: tuple[str, ...] = ()
    roles: tuple[tuple[str, str], ...] = ()


@dataclass
class UploadNote:
    """What a tool's upload hook (:meth:`Tool.on_image_upload`) leaves in the session's history:
    an ``event`` message with ``text`` (read by the controller's scene context) and ``data``
    (JSON; its ``"event"`` key names the kind of note, e.g. ``"caption"``)."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)


class Tool(ABC):
    """A vision tool: subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    args_model: ClassVar[type[ToolArgs]]
    gestures: ClassVar[tuple[str, ...]] = ()
    #: the words that ask for this tool (see :class:`ToolWords`)
    words: ClassVar[ToolWords] = ToolWords()

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = tuple(backends)

    @abstractmethod
    def run(self, args: Any, ctx: ToolContext, backend: Any) -> ToolOutput:
        """Run with validated ``args`` (an instance of ``args_model``) on ``backend``."""

    def on_image_upload(self, image_path: str, ctx: ToolContext, backend: Any) -> UploadNote | None:
        """Background work on a newly uploaded image (``image_path``) with this tool's chosen backend.

        The server runs it on its background executor after the upload answered (never on the
        request thread), for every available tool that overrides it: precompute what a later
        call needs (an embedding, an edge map) or return a note for the history (a caption).
        It must not change the session otherwise; an error is logged and changes nothing.
        The default does nothing.
        """
        return None

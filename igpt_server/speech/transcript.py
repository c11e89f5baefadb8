"""What a transcription returns (pydantic, JSON-ready). Times are seconds from the clip's start."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Word(_Strict):
    """One recognised word with its time span and the model's confidence in [0, 1]."""

    start: float = Field(ge=0)
    end: float = Field(ge=0)
    word: str
    probability: float = Field(ge=0, le=1)


class Segment(_Strict):
    """A stretch of speech (a phrase or sentence) and its words."""

    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    words: list[Word]


class Transcript(_Strict):
    """The whole clip: ``text`` is the segments' texts joined with single spaces."""

    text: str
    segments: list[Segment]

    @classmethod
    def of(cls, segments: list[Segment]) -> Transcript:
        kept = [s for s in segments if s.text]
        return cls(text=" ".join(s.text for s in kept), segments=kept)

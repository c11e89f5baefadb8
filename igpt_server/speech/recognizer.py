"""The speech recognizer: one per server, built at start-up, shared by every session.

It picks its backend once, like the tool registry does (the first available of
openai-whisper, faster-whisper; see :mod:`igpt_server.speech.backends`), loads the model
through the model pool on first use (key ``speech.<backend>:<model>``, device from
``IGPT_DEVICES=speech=...`` and dtype from ``IGPT_DTYPES=speech=...``, both ``auto`` by
default: int8 on a CPU and fp16 on a GPU for faster-whisper, fp32 on a CPU and fp16 on a GPU
for openai-whisper) and decodes under the model's lock.
:meth:`SpeechRecognizer.transcribe` blocks: call it from a sync route (FastAPI's threadpool) or
``run_in_threadpool``, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from igpt_server.errors import IgptError, InvalidInput, ToolFailed, ToolUnavailable
from igpt_server.models.pool import ModelPool, Shrink, is_out_of_memory
from igpt_server.settings import Settings
from igpt_server.speech.audio import decode_audio, has_speech
from igpt_server.speech.backends import (
    DecodeOptions,
    FasterWhisperBackend,
    ModelChoice,
    OpenAIWhisperBackend,
    SpeechBackend,
)
from igpt_server.speech.transcript import Transcript
from igpt_server.tooling.registry import BackendInfo

log = logging.getLogger(__name__)

NO_SPEECH_MESSAGE = (
    "no speech detected in the clip (it is silent or holds only noise); "
    "speak closer to the microphone and check that it is not muted"
)


class SpeechInfo(BaseModel):
    """Which speech backend and model this server uses, or why none."""

    backend: str | None
    model: str | None
    available: bool
    reason: str | None
    backends: list[BackendInfo]


def default_backends() -> list[SpeechBackend]:
    """Best first: an openai-whisper checkpoint when configured, else faster-whisper."""
    return [OpenAIWhisperBackend(), FasterWhisperBackend()]


class SpeechRecognizer:
    """Speech to text with word timestamps; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        pool: ModelPool,
        backends: Sequence[SpeechBackend] | None = None,
        options: DecodeOptions | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.options = options or DecodeOptions()
        self.backends = tuple(default_backends() if backends is None else backends)
        reasons = [(b, b.unavailable_reason(settings)) for b in self.backends]
        self.backend: SpeechBackend | None = next((b for b, r in reasons if r is None), None)
        self.model: ModelChoice | None = self.backend.model(settings) if self.backend else None
        self._infos = [BackendInfo(name=b.name, available=r is None, reason=r) for b, r in reasons]
        self._reason = None if self.backend else "; ".join(r for _, r in reasons if r) or "no speech backend"

    def info(self) -> SpeechInfo:
        return SpeechInfo(
            backend=self.backend.name if self.backend else None,
            model=self.model.name if self.model else None,
            available=self.backend is not None,
            reason=self._reason,
            backends=self._infos,
        )

    def transcribe(self, file: Path) -> Transcript:
        """Transcribe an audio file (any format :func:`decode_audio` reads).

        Raises :class:`ToolUnavailable` (503) without a backend, the decoding errors of
        :func:`decode_audio` (413/415/422) and :class:`InvalidInput` with code ``no_speech`` (422)
        when the clip holds no speech.
        """
        self._require()
        return self.transcribe_audio(decode_audio(file, self.settings.max_audio_seconds))

    def transcribe_audio(self, audio: np.ndarray) -> Transcript:
        """Transcribe float32 mono 16 kHz samples, shape (n,); the same errors as :meth:`transcribe`."""
        if not has_speech(audio):
            raise InvalidInput(NO_SPEECH_MESSAGE, code="no_speech")
        transcript = self.run_model(audio)
        if not transcript.text:
            raise InvalidInput(NO_SPEECH_MESSAGE, code="no_speech")
        return transcript

    def warm_up(self) -> None:
        """Load the model into the pool now (the server's start-up warm-up), with the same key,
        loader, device and dtype as the first :meth:`run_model`; :class:`ToolUnavailable`
        without a backend."""
        backend, model, device, dtype = self._placement()
        # through run, not a `with pool.use` block: on Ray Serve the model loads in its replica
        self.pool.run(
            self.pool_key(),
            self._loader(backend, model, dtype),
            _loaded,
            backend=backend.name,
            device=device,
            dtype=dtype,
        )

    def run_model(self, audio: np.ndarray) -> Transcript:
        """The backend's raw transcript of ``audio`` (no speech gate; may be empty)."""
        backend, model, device, dtype = self._placement()

        def decode(options: DecodeOptions) -> Callable[[Any], Transcript]:
            def run(loaded: Any) -> Transcript:
                try:
                    return backend.transcribe(loaded, audio, options, dtype)
                except IgptError:
                    raise
                except Exception as exc:  # a library failure: report it, never crash the server
                    if is_out_of_memory(exc):
                        raise  # the pool's out-of-memory policy takes it
                    log.exception("speech backend %s failed", backend.name)
                    raise ToolFailed(
                        f"speech recognition ({backend.name}) failed: {type(exc).__name__}: {exc}"
                    ) from exc

            return run

        return self.pool.run(
            self.pool_key(),
            self._loader(backend, model, dtype),
            decode(self.options),
            backend=backend.name,
            device=device,
            dtype=dtype,
            shrink=Shrink(decode(replace(self.options, beam_size=1)), "with greedy decoding (beam size 1)"),
        )

    def pool_key(self) -> str:
        backend, model = self._require()
        return f"speech.{backend.name}:{model.name}"

    def _placement(self) -> tuple[SpeechBackend, ModelChoice, str, str]:
        """The backend, its model, the device and the dtype it runs in (from the settings)."""
        backend, model = self._require()
        device = backend.resolve_device(self.settings.device_for("speech"))
        return backend, model, device, backend.dtype(device, self.settings.dtype_for("speech"))

    def _require(self) -> tuple[SpeechBackend, ModelChoice]:
        if self.backend is None or self.model is None:
            raise ToolUnavailable(
                f"speech recognition is unavailable on this server: {self._reason}",
                detail={"backends": [i.model_dump() for i in self._infos]},
            )
        return self.backend, self.model

    @staticmethod
    def _loader(backend: SpeechBackend, model: ModelChoice, dtype: str) -> Any:
        def load(device: str) -> Any:
            try:
                return backend.load(model, device, dtype)
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise  # the pool's out-of-memory policy takes it
                log.exception("loading speech model %s failed", model.path)
                raise ToolUnavailable(
                    f"the speech model {model.path} ({backend.name}) does not load on {device} in {dtype}: "
                    f"{type(exc).__name__}: {exc}; replace the model files or change "
                    "IGPT_DEVICES=speech=... / IGPT_DTYPES=speech=..."
                ) from exc

        return load


def _loaded(model: Any) -> None:
    """Nothing more than having the model loaded (the warm-up's work)."""

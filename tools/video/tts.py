"""The full tier's voice: a VITS text-to-speech model from the model directory (transformers).

The ``vits`` backend of ``narrate``. Put a VITS checkpoint in Hugging Face layout in
``<model_dir>/tts/``: ``config.json`` (``model_type: vits``), ``model.safetensors``,
``vocab.json`` and ``tokenizer_config.json``, e.g. a copy of ``facebook/mms-tts-eng`` (MMS,
English, 16 kHz, 36 M parameters, CC-BY-NC 4.0: check the licence fits your use). Nothing is
downloaded. Without it ``narrate`` speaks with espeak-ng (:class:`~igpt_tools.video.voice.EspeakBackend`).

How a script is spoken: digits are spelled out (MMS's character vocabulary has none), the
text is split into sentences, each is synthesized with ``VitsModel`` (``speaking_rate`` set
to the speed that fits the clip) and they are joined with :data:`PAUSE_S` of silence. The
sampling noise is seeded per sentence, so the same script gives the same sound. The model is
the pool family ``tts`` (``IGPT_DEVICES=tts=cuda:0``; it runs in fp32, it is small).

Quality: MMS-TTS English is a natural, single-speaker neural voice, clearly better than
espeak-ng's formant voice; a tokenizer config asking for ``phonemize`` (other VITS
checkpoints) needs the ``phonemizer`` package, and the reason says so. The tests use a tiny
random-weight VITS (noise, of a plausible length), which proves the plumbing only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from igpt_server.errors import ToolUnavailable
from igpt_server.models.pool import PooledModule
from igpt_server.settings import Settings
from igpt_server.tooling.interface import ToolContext
from igpt_tools.video.voice import Voice, VoiceBackend

TTS_SUBDIR = "tts"
TTS_FILES = "config.json, model.safetensors, vocab.json and tokenizer_config.json"
#: silence between sentences (s)
PAUSE_S = 0.25
#: a sentence longer than this (characters) is split at commas or spaces
MAX_SENTENCE = 300

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
_ONES += "seventeen eighteen nineteen"
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety"


def _number(value: int) -> str:
    """``value`` (0 <= value < 1 000 000) in English words."""
    ones, tens = _ONES.split(), _TENS.split()
    if value < 20:
        return ones[value]
    if value < 100:
        return tens[value // 10] + ("" if value % 10 == 0 else " " + ones[value % 10])
    if value < 1000:
        rest = value % 100
        return ones[value // 100] + " hundred" + ("" if rest == 0 else " and " + _number(rest))
    rest = value % 1000
    return _number(value // 1000) + " thousand" + ("" if rest == 0 else " " + _number(rest))


def spell_numbers(text: str) -> str:
    """Digits as words: ``"3.5 s and 12 bikes"`` -> ``"three point five s and twelve bikes"``."""

    def words(match: re.Match[str]) -> str:
        whole, _, fraction = match.group(0).partition(".")
        number = int(whole)
        spoken = _number(number) if number < 1_000_000 else " ".join(_ONES.split()[int(d)] for d in whole)
        if fraction:
            spoken += " point " + " ".join(_ONES.split()[int(d)] for d in fraction)
        return spoken

    return re.sub(r"\d+(?:\.\d+)?", words, text)


def sentences(text: str) -> list[str]:
    """``text`` in sentences of at most :data:`MAX_SENTENCE` characters (empty ones dropped)."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?;])\s+", text) if p.strip()]
    out: list[str] = []
    for part in parts:
        while len(part) > MAX_SENTENCE:
            cut = max(part.rfind(",", 0, MAX_SENTENCE), part.rfind(" ", 0, MAX_SENTENCE))
            cut = cut if cut > 0 else MAX_SENTENCE
            out.append(part[:cut].strip(" ,"))
            part = part[cut:].strip(" ,")
        if part:
            out.append(part)
    return out


def find_tts(model_dir: Path | None) -> Path:
    """The VITS folder of the model directory, or :class:`ToolUnavailable` saying what to put where."""
    if model_dir is None:
        raise ToolUnavailable(
            f"the neural voice needs a VITS model: set IGPT_MODEL_DIR and put facebook/mms-tts-eng "
            f"({TTS_FILES}) in <model_dir>/{TTS_SUBDIR}/"
        )
    folder = Path(model_dir) / TTS_SUBDIR
    config = folder / "config.json"
    if not config.is_file():
        raise ToolUnavailable(f"no VITS voice in {folder}: put facebook/mms-tts-eng ({TTS_FILES}) there")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise ToolUnavailable(f"{config} is not a valid model config: {exc}") from None
    if model_type != "vits":
        raise ToolUnavailable(f"{config} is a {model_type!r} model; the voice needs a VITS one (model_type 'vits')")
    missing = [name for name in ("vocab.json", "tokenizer_config.json") if not (folder / name).is_file()]
    if missing:
        raise ToolUnavailable(f"the VITS voice in {folder} lacks {', '.join(missing)}; copy them from the checkpoint")
    return folder


@dataclass
class VitsVoice:
    """A loaded VITS model and its tokenizer."""

    model: Any
    tokenizer: Any

    @property
    def rate(self) -> int:
        return int(self.model.config.sampling_rate)


def load_vits(folder: Path, device: str) -> PooledModule[VitsVoice]:
    """``VitsModel`` and ``AutoTokenizer`` from ``folder`` (local files only), on ``device``, fp32."""
    from transformers import AutoTokenizer, VitsModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = VitsModel.from_pretrained(str(folder), local_files_only=True)
    except ImportError as exc:  # a phonemizing tokenizer without the phonemizer package
        raise ToolUnavailable(f"the VITS voice in {folder} needs another package: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ToolUnavailable(f"cannot load the VITS voice in {folder}: {str(exc)[:300]}") from None
    model.to(device).eval()
    return PooledModule(VitsVoice(model, tokenizer), [model], device=device, dtype="fp32")


def synthesize(voice: VitsVoice, text: str, speed: float = 1.0) -> np.ndarray:
    """``text`` spoken by ``voice``: mono float32 samples in [-1, 1] at ``voice.rate`` Hz."""
    import torch

    pause = np.zeros(int(PAUSE_S * voice.rate), np.float32)
    pieces: list[np.ndarray] = []
    voice.model.speaking_rate = speed
    for index, sentence in enumerate(sentences(spell_numbers(text))):
        inputs = voice.tokenizer(sentence, return_tensors="pt")
        if inputs["input_ids"].shape[-1] == 0:
            continue  # nothing the vocabulary can say (symbols only)
        device = next(voice.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(index)
            wave = voice.model(**{k: v.to(device) for k, v in inputs.items()}).waveform[0]
        if pieces:
            pieces.append(pause)
        pieces.append(np.clip(wave.float().cpu().numpy(), -1.0, 1.0).astype(np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


class VitsVoiceBackend(VoiceBackend):
    """The ``vits`` voice of ``narrate``: a VITS model in ``<model_dir>/tts/`` (see the module docstring)."""

    name = "vits"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers", "av", "cv2")
    extra = "full"
    model_families: ClassVar[tuple[str, ...]] = ("tts",)
    family: ClassVar[str] = "tts"

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is not None:
            return reason
        try:
            find_tts(settings.model_dir)
        except ToolUnavailable as exc:
            return f"{exc.message} (until then narrate speaks with espeak-ng)"
        return None

    def say(self, text: str, speed: float, ctx: ToolContext | None = None) -> Voice:
        if ctx is None:
            raise ValueError("the VITS voice runs in the model pool: pass the tool context")
        import torch

        folder = find_tts(ctx.settings.model_dir)
        device = ctx.pool.device_for(self.family)

        def work(model: PooledModule[VitsVoice]) -> tuple[np.ndarray, int]:
            with torch.inference_mode():
                return synthesize(model.obj, text, speed), model.obj.rate

        samples, rate = ctx.pool.run(
            "tts.vits", lambda target: load_vits(folder, target), work, backend=self.name, device=device
        )
        words = len(text.split())
        seconds = samples.size / rate
        return Voice(samples, rate, round(60 * words / seconds) if seconds > 0 else 0)

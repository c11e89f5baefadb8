"""Audio for speech: PyAV decoding to 16 kHz mono, the caps, truncation, the speech gate, WER."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igpt_server.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from igpt_server.speech.audio import SAMPLE_RATE, decode_audio, has_speech
from igpt_server.speech.text import normalize_text, word_error_rate
from tests.speech_clips import speak, to_browser_webm, truncated, wav_with_codec_tag

DATA = Path(__file__).parents[1] / "data"


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("jfk.flac", 11.0), ("change_the_dog_to_a_monkey.mp3", 4.46), ("the_bench.mp3", 2.5)],
)
def test_decodes_to_16khz_mono_float32(name: str, seconds: float) -> None:
    audio = decode_audio(DATA / name, max_seconds=600)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SAMPLE_RATE - seconds) < 0.1
    assert 0.1 < float(np.abs(audio).max()) <= 1.0


def test_browser_webm_without_duration_decodes(tmp_path: Path) -> None:
    clip = to_browser_webm(speak("select the truck", tmp_path / "c.wav"), tmp_path / "c.webm")
    reference = decode_audio(tmp_path / "c.wav", max_seconds=600)
    audio = decode_audio(clip, max_seconds=600)
    assert abs(audio.size - reference.size) < 0.05 * SAMPLE_RATE  # opus adds at most a few ms


def test_clip_without_declared_duration_is_capped_while_decoding(tmp_path: Path) -> None:
    clip = to_browser_webm(
        speak("remove the masked object, then replace the dog", tmp_path / "c.wav"), tmp_path / "c.webm"
    )
    with pytest.raises(PayloadTooLarge, match="IGPT_MAX_AUDIO_SECONDS") as err:
        decode_audio(clip, max_seconds=1.0)
    assert err.value.code == "too_long"


def test_truncated_flac_is_refused(tmp_path: Path) -> None:
    """FLAC declares its sample count, so a cut-off upload shows (a cut mp3 is just a shorter mp3)."""
    with pytest.raises(InvalidInput, match="truncated") as err:
        decode_audio(truncated(DATA / "jfk.flac", tmp_path / "jfk.flac"), max_seconds=600)
    assert err.value.code == "truncated_audio"


def test_unknown_codec_and_non_audio_are_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMedia, match="does not decode"):
        decode_audio(wav_with_codec_tag(tmp_path / "odd.wav"), max_seconds=600)
    with pytest.raises(UnsupportedMedia):
        decode_audio(DATA / "truck.jpg", max_seconds=600)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(UnsupportedMedia):
        decode_audio(tmp_path / "empty.wav", max_seconds=600)


def test_speech_gate() -> None:
    rng = np.random.default_rng(0)
    assert not has_speech(np.zeros(3 * SAMPLE_RATE, np.float32))
    assert not has_speech(np.zeros(0, np.float32))
    assert not has_speech((rng.standard_normal(3 * SAMPLE_RATE) * 0.05).astype(np.float32))
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE)
    assert not has_speech(tone.astype(np.float32))
    assert has_speech(decode_audio(DATA / "jfk.flac", max_seconds=600))
    assert has_speech(decode_audio(DATA / "the_bench.mp3", max_seconds=600))


def test_normalize_and_word_error_rate() -> None:
    assert (
        normalize_text("  Ask not, what your COUNTRY can do — for you!") == "ask not what your country can do for you"
    )
    assert normalize_text("It's a well-known dog.") == "it's a well known dog"
    assert word_error_rate("change the dog to a monkey", "Change the dog to a monkey.") == 0.0
    assert word_error_rate("remove the masked object", "remove the mask object") == 0.25
    assert word_error_rate("select the truck", "select truck please now") == pytest.approx(3 / 3)
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "hello") == 1.0
    assert word_error_rate("a b", "") == 1.0

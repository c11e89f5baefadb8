"""The ``vits`` voice of ``narrate``: transformers' VITS from ``<model_dir>/tts/``, on a tiny random model.

The model is a ``VitsConfig`` with every size shrunk (the real hop length of 256 samples kept,
so lengths are as a real model's would be per predicted frame), randomly initialised and saved
with ``save_pretrained`` into a temporary model directory, beside a ``VitsTokenizer`` built here
from a character ``vocab.json`` in the layout of ``facebook/mms-tts-eng`` (lower-case letters,
space, apostrophe, hyphen; no phonemizer). Nothing is downloaded. Random weights speak noise,
so these tests check the plumbing and the lengths, not how the voice sounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.store import SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.video.tts import VitsVoiceBackend, sentences, spell_numbers
from igpt_tools.video.voice import mux_voiceover
from tests.helpers import make_client, new_session
from tests.video_clips import BIKES

CHARACTERS = ["_", " ", "'", "-", *"abcdefghijklmnopqrstuvwxyz"]
SCRIPT = "Look at those bikes go. Twelve riders and not one of them stops for coffee!"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<model_dir>/tts/`` holding a tiny random VITS and its character tokenizer."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    root = tmp_path_factory.mktemp("models")
    folder = root / "tts"
    folder.mkdir()
    vocab = {c: i for i, c in enumerate(CHARACTERS)}
    vocab["<unk>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = VitsTokenizer(
        str(root / "vocab.json"), pad_token="_", unk_token="<unk>", add_blank=True, normalize=True, phonemize=False
    )
    tokenizer.save_pretrained(folder)
    config = VitsConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=17,
        upsample_initial_channel=32,
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        duration_predictor_filter_channels=16,
        duration_predictor_num_flows=2,
        prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1,
    )
    torch.manual_seed(0)
    VitsModel(config).save_pretrained(folder)
    return root


def _ctx(tmp_path: Path, model_dir: Path) -> StoreToolContext:
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, devices={"tts": "cpu"})
    store = SessionStore(settings.data_dir)
    return StoreToolContext(store.create().id, store, settings, ModelPool(settings))


def test_numbers_are_spelled_and_text_is_split_in_sentences() -> None:
    assert spell_numbers("at 3.5 s, 12 bikes and 2024 riders") == (
        "at three point five s, twelve bikes and two thousand twenty four riders"
    )
    assert sentences("One. Two!  Three? ") == ["One.", "Two!", "Three?"]
    assert all(len(s) <= 300 for s in sentences("word " * 200))


def test_without_a_model_the_reason_names_the_folder_and_the_fallback(tmp_path: Path) -> None:
    reason = VitsVoiceBackend().unavailable_reason(Settings(data_dir=tmp_path, model_dir=tmp_path))
    assert reason is not None and str(tmp_path / "tts") in reason
    assert "mms-tts-eng" in reason and "espeak-ng" in reason


def test_narrate_uses_vits_with_a_model_and_espeak_without(tmp_path: Path, model_dir: Path) -> None:
    with make_client(tmp_path / "a", model_dir=model_dir) as client:
        narrate = next(t for t in client.get("/api/tools").json() if t["name"] == "narrate")
        assert narrate["backend"] == "vits"
    with make_client(tmp_path / "b") as client:
        narrate = next(t for t in client.get("/api/tools").json() if t["name"] == "narrate")
        assert narrate["backend"] == "espeak-ng"


def test_the_voice_is_a_waveform_of_plausible_length_the_same_each_time(tmp_path: Path, model_dir: Path) -> None:
    ctx = _ctx(tmp_path, model_dir)
    backend = VitsVoiceBackend()
    voice = backend.say(SCRIPT, 1.0, ctx)
    assert voice.rate == 16000 and voice.samples.dtype == np.float32 and voice.samples.ndim == 1
    assert np.isfinite(voice.samples).all() and np.abs(voice.samples).max() <= 1.0
    # two sentences of 75 characters, a blank token between every two: about 150 tokens, one or
    # two 16 ms frames each at random weights (a real voice takes 3 to 6 s), plus one pause
    assert 1.0 < voice.seconds < 30.0, voice.seconds
    assert np.array_equal(backend.say(SCRIPT, 1.0, ctx).samples, voice.samples)
    faster = backend.say(SCRIPT, 1.5, ctx)
    assert faster.seconds < voice.seconds


def test_a_voice_too_long_for_the_clip_is_sped_up_then_cut(tmp_path: Path, model_dir: Path) -> None:
    ctx = _ctx(tmp_path, model_dir)
    backend = VitsVoiceBackend()
    natural = backend.say(SCRIPT, 1.0, ctx).seconds
    fitted = backend.fitted(SCRIPT, natural / 3, ctx)
    assert fitted.seconds <= natural / 3 + 1e-3 and fitted.note and "cut" in fitted.note


def test_the_voice_muxes_over_a_clip(tmp_path: Path, model_dir: Path) -> None:
    voice = VitsVoiceBackend().fitted(SCRIPT, 9.5, _ctx(tmp_path, model_dir))
    (tmp_path / "out.mp4").write_bytes(mux_voiceover(BIKES, voice, 10.0))
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video and container.streams.audio
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        sound = np.concatenate(
            [o.to_ndarray().reshape(-1) for f in container.decode(audio=0) for o in resampler.resample(f)]
        )
    assert abs(sound.size / 48000 - 10.0) < 0.2
    start = int(0.3 * 48000)
    heard = sound[start : start + int(voice.seconds * 48000)]
    assert np.sqrt(np.mean(heard**2)) > 1e-3  # the voice is in the mix (bikes.mp4 is silent)


def test_narrate_through_the_api_speaks_with_vits(tmp_path: Path, model_dir: Path) -> None:
    with make_client(tmp_path / "data", model_dir=model_dir, devices={"tts": "cpu"}) as client:
        session = new_session(client)
        with BIKES.open("rb") as fh:
            video = client.post(f"/api/sessions/{session}/files", files={"file": ("bikes.mp4", fh)}).json()["path"]
        response = client.post("/api/tools/narrate", json={"session": session, "args": {"video_path": video}})
        assert response.status_code == 200, response.text
        result = response.json()
    assert "voice vits" in result["text"]
    assert result["artifacts"][0]["kind"] == "video" and result["data"]["voice_seconds"] > 0.5

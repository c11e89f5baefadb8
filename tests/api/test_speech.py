"""Voice input over HTTP: POST /api/sessions/{id}/speech, with the embedded faster-whisper tiny.en.

Spoken commands that are not among the fixtures are rendered by espeak-ng at test time; the
browser-style clip is that rendering re-encoded as MediaRecorder does (webm/opus, streamed,
no duration). Every refused clip must leave the session exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from igpt_server.speech.text import normalize_text, word_error_rate
from tests.helpers import DATA, make_client, new_session, upload
from tests.speech_clips import reencode, speak, to_browser_webm, truncated, wav_with_codec_tag, write_noise

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, store_backend: str) -> Iterator[TestClient]:
    """One app for the module (the model loads once); the auxiliary control alone routes chat."""
    data = tmp_path_factory.mktemp("speech") / "data"
    with make_client(data, llm={"provider": "none"}, max_audio_seconds=60) as c:
        yield c


def post_speech(
    client: TestClient, session: str, file: Path, *, chat: bool = False, **form: str
) -> tuple[int, dict[str, Any]]:
    with file.open("rb") as fh:
        response = client.post(
            f"/api/sessions/{session}/speech",
            params={"chat": "true"} if chat else None,
            files={"file": (file.name, fh)},
            data=form,
        )
    return response.status_code, response.json()


def test_jfk_flac_gives_the_text_with_word_timestamps_and_keeps_the_audio(client: TestClient) -> None:
    sid = new_session(client)
    status, body = post_speech(client, sid, DATA / "jfk.flac")
    assert status == 200, body
    assert "ask not what your country can do for you" in normalize_text(body["text"])
    assert body["chat"] is None
    segment = body["segments"][0]
    assert set(segment) == {"start", "end", "text", "words"}
    assert set(segment["words"][0]) == {"start", "end", "word", "probability"}
    assert body["audio"]["kind"] == "audio" and body["audio"]["path"].endswith(".flac")
    session = client.get(f"/api/sessions/{sid}").json()
    assert [a["path"] for a in session["artifacts"]] == [body["audio"]["path"]]
    assert session["messages"][-1]["role"] == "event" and body["audio"]["path"] in session["messages"][-1]["content"]
    assert client.get(body["audio"]["url"]).content == (DATA / "jfk.flac").read_bytes()


def test_spoken_command_mp3(client: TestClient) -> None:
    status, body = post_speech(client, new_session(client), DATA / "change_the_dog_to_a_monkey.mp3")
    assert status == 200, body
    assert normalize_text(body["text"]) == "change the dog to a monkey"


@pytest.mark.parametrize(
    ("browser", "container", "codec", "rate", "ext"),
    [
        ("chrome", "webm", "libopus", 48000, "webm"),
        ("firefox", "ogg", "libopus", 48000, "ogg"),
        ("safari", "mp4", "aac", 44100, "mp4"),
    ],
)
def test_browser_recordings(
    client: TestClient, tmp_path: Path, browser: str, container: str, codec: str, rate: int, ext: str
) -> None:
    """What MediaRecorder writes: streamed (no duration in a webm header), Opus or AAC."""
    wav = speak("read the text on the poster", tmp_path / "read.wav")
    clip = to_browser_webm(wav, tmp_path / "read.webm") if browser == "chrome" else None
    clip = clip or reencode(wav, tmp_path / f"read.{ext}", container, codec, rate)
    status, body = post_speech(client, new_session(client), clip)
    assert status == 200, body
    assert word_error_rate("read the text on the poster", body["text"]) <= 1 / 6, body["text"]
    assert body["audio"]["path"].endswith(f".{ext}")


def test_speech_backend_is_listed(client: TestClient) -> None:
    info = client.get("/api/speech").json()
    assert info["available"] and info["backend"] == "faster-whisper" and info["model"] == "tiny.en-embedded"
    assert {b["name"] for b in info["backends"]} == {"openai-whisper", "faster-whisper"}


def _not_audio(tmp_path: Path) -> Path:
    return DATA / "truck.jpg"


def _text_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.wav").write_text("this is not audio at all\n" * 50)
    return tmp_path / "notes.wav"


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty.webm").write_bytes(b"")
    return tmp_path / "empty.webm"


def _truncated(tmp_path: Path) -> Path:
    return truncated(DATA / "jfk.flac", tmp_path / "cut.flac")


def _silence(tmp_path: Path) -> Path:
    return write_noise(tmp_path / "silence.flac", 4.0)


def _noise(tmp_path: Path) -> Path:
    return write_noise(tmp_path / "hiss.flac", 4.0, amplitude=0.05)


def _two_hours(tmp_path: Path) -> Path:
    return write_noise(tmp_path / "two_hours.flac", 2 * 3600.0)


def _unknown_codec(tmp_path: Path) -> Path:
    return wav_with_codec_tag(tmp_path / "odd.wav")


def _long_stream_webm(tmp_path: Path) -> Path:
    """Over the module's 60 s cap, in a webm with no duration in its header (caught while decoding)."""
    wav = write_noise(tmp_path / "long.wav", 70.0, codec="pcm_s16le", amplitude=0.01)
    return to_browser_webm(wav, tmp_path / "long.webm")


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (_not_audio, 415, "unsupported_media"),
        (_text_file, 415, "unsupported_media"),
        (_empty, 415, "unsupported_media"),
        (_truncated, 422, "truncated_audio"),
        (_silence, 422, "no_speech"),
        (_noise, 422, "no_speech"),
        (_two_hours, 413, "too_long"),
        (_long_stream_webm, 413, "too_long"),
        (_unknown_codec, 415, "unsupported_media"),
    ],
)
def test_bad_clips_are_refused_and_nothing_is_kept(
    client: TestClient, tmp_path: Path, make: Any, status: int, code: str
) -> None:
    sid = new_session(client)
    before = client.get(f"/api/sessions/{sid}").json()
    got, body = post_speech(client, sid, make(tmp_path))
    assert got == status, body
    assert body["error"]["code"] == code and body["error"]["message"]
    assert client.get(f"/api/sessions/{sid}").json() == before
    incoming = Path(client.app.state.services.store.sessions_dir) / sid / ".incoming"  # type: ignore[attr-defined]
    assert not any(incoming.glob("*")), "the temporary upload must be removed"


def test_gesture_needs_chat_and_must_be_valid(client: TestClient) -> None:
    sid = new_session(client)
    click = json.dumps({"type": "click", "points": [{"x": 10, "y": 10, "label": 1}]})
    status, body = post_speech(client, sid, DATA / "the_bench.mp3", gesture=click)
    assert status == 422 and "chat=true" in body["error"]["message"]
    status, body = post_speech(client, sid, DATA / "the_bench.mp3", chat=True, gesture='{"type": "wave"}')
    assert status == 422 and body["error"]["code"] == "invalid_gesture"
    assert client.get(f"/api/sessions/{sid}").json()["artifacts"] == []


def test_unknown_session_is_404(client: TestClient) -> None:
    status, body = post_speech(client, "0" * 32, DATA / "the_bench.mp3")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_spoken_remove_after_a_selection_runs_the_remove_tool(client: TestClient, tmp_path: Path) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image["path"])
    clip = speak("remove the masked object", tmp_path / "remove.wav")

    status, body = post_speech(client, sid, clip, chat=True)

    assert status == 200, body
    assert normalize_text(body["text"]).startswith("remove the mask")
    steps = body["chat"]["steps"]
    assert [s["tool"] for s in steps] == ["remove"], steps
    assert steps[0]["args"]["image_path"] == image["path"] and steps[0]["args"]["mask_path"] == mask["path"]
    (edited,) = [a for a in body["chat"]["artifacts"] if a["kind"] == "image"]
    assert edited["parent"] == image["path"] and edited["tool"] == "remove"
    session = client.get(f"/api/sessions/{sid}").json()
    assert session["active_image"] == edited["path"]
    assert body["audio"]["path"] in [a["path"] for a in session["artifacts"]]


def test_spoken_request_with_a_click_selects_then_removes(client: TestClient, tmp_path: Path) -> None:
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")
    clip = speak("remove this", tmp_path / "this.wav")
    click = json.dumps({"type": "click", "points": [{"x": 240, "y": 300, "label": 1}]})  # on the dog

    status, body = post_speech(client, sid, clip, chat=True, gesture=click)

    assert status == 200, body
    assert [s["tool"] for s in body["chat"]["steps"]] == ["segment", "remove"], body["chat"]
    assert client.get(f"/api/sessions/{sid}").json()["active_image"] != image["path"]

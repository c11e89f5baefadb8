"""Voice input: ``POST /api/sessions/{id}/speech`` transcribes a clip, optionally as a chat turn.

Multipart form: ``file`` (wav, mp3, flac, ogg, the webm/opus of browsers' MediaRecorder, m4a)
and, with ``?chat=true`` only, an optional ``gesture`` (a JSON gesture, as in the chat body).
The answer is ``{"text", "segments": [{"start", "end", "text", "words": [{"start", "end",
"word", "probability"}]}], "audio": artifact, "chat": null or the chat turn}``.

The clip is decoded and transcribed from a temporary file first; only a clip that
transcribed is kept, as an audio artifact of the session (with an ``event`` in the history
naming it and its text). A refused clip (not audio, truncated, too long, silent: see
:mod:`igpt_server.speech`) leaves the session unchanged. With ``chat=true`` the transcript
then runs as one chat turn (``services.controller.chat``) and its result is under ``"chat"``;
should the turn itself fail (e.g. the LLM endpoint is down), its error is the answer and the
clip, which did transcribe, stays in the session.
Decoding blocks, so this is a sync route: FastAPI runs it in its threadpool.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import TypeAdapter, ValidationError

from igpt_server import media
from igpt_server.api.chat import ChatOut
from igpt_server.api.deps import ServicesDep
from igpt_server.api.files import save_upload
from igpt_server.api.schemas import ArtifactOut, Strict
from igpt_server.errors import InvalidInput
from igpt_server.perception.gestures import Gesture
from igpt_server.services import Services
from igpt_server.speech import Segment, SpeechInfo, Transcript

router = APIRouter(prefix="/api", tags=["speech"])

_GESTURE = TypeAdapter(Gesture)
_CHUNK = 1024 * 1024


class SpeechOut(Strict):
    """A transcript, the audio artifact kept, and the chat turn it ran (``?chat=true``)."""

    text: str
    segments: list[Segment]
    audio: ArtifactOut
    chat: ChatOut | None = None


@router.post("/sessions/{session_id}/speech", response_model=SpeechOut)
def speech(
    session_id: str,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="audio: wav, mp3, flac, ogg, webm (opus) or m4a")],
    chat: Annotated[bool, Query(description="also run the transcript as a chat turn")] = False,
    gesture: Annotated[
        str | None, Form(description='with chat=true: a JSON gesture sent with the words, e.g. {"type": "click", ...}')
    ] = None,
) -> SpeechOut:
    """Transcribe a spoken clip (with word timestamps); with ``chat=true`` also run it as a chat turn."""
    services.store.require(session_id)
    pointing = _parse_gesture(gesture, chat)
    transcript = _transcribe_upload(services, session_id, file)
    file.file.seek(0)
    audio = save_upload(services, session_id, file, "audio")
    services.store.append_message(
        session_id, "event", f'transcribed {audio.path}: "{transcript.text}"', {"speech": audio.path}
    )
    out = SpeechOut(text=transcript.text, segments=transcript.segments, audio=ArtifactOut.of(session_id, audio))
    if chat:
        turn = services.controller.chat(session_id, transcript.text, pointing)
        out.chat = ChatOut.of(session_id, turn)
    return out


@router.get("/speech", response_model=SpeechInfo)
def speech_info(services: ServicesDep) -> SpeechInfo:
    """Which speech backend and model this server uses, or why speech input is unavailable."""
    return services.speech.info()


def _parse_gesture(raw: str | None, chat: bool) -> Gesture | None:
    if raw is None or not raw.strip():
        return None
    if not chat:
        raise InvalidInput("the 'gesture' field is only used with ?chat=true; drop it or add chat=true")
    try:
        return _GESTURE.validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "gesture"
        raise InvalidInput(
            f"the 'gesture' field is not a valid gesture ({where}: {err['msg']}); send JSON such as "
            '{"type": "click", "points": [{"x": 10, "y": 20, "label": 1}]}',
            code="invalid_gesture",
        ) from None


def _transcribe_upload(services: Services, session_id: str, file: UploadFile) -> Transcript:
    """Check and transcribe the upload from a temporary file that is always removed."""
    temp = services.store.new_upload_file(session_id)
    try:
        with temp.open("wb") as out:
            shutil.copyfileobj(file.file, out, _CHUNK)
        _probe_audio(services, temp)
        return services.speech.transcribe(temp)
    finally:
        temp.unlink(missing_ok=True)


def _probe_audio(services: Services, temp: Path) -> None:
    settings = services.settings
    media.probe_upload(temp, "audio", settings.max_image_pixels, settings.max_audio_seconds)

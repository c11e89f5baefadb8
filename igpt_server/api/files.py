"""Uploads and downloads of session files.

An upload is streamed to a temporary file inside the session folder, decoded to check that
it is what it claims (image, audio, video), then registered as an artifact with its bytes
unchanged. An uploaded image becomes the active image. With ``kind=mask`` and
``parent=<image path>`` the upload is a mask of that image: it must have the image's size,
is stored as a 0/255 PNG and becomes the active selection.

Storage limits apply while the bytes stream in: an upload that would pass the session's
quota (413 ``quota_exceeded``), the global quota or the free-disk watermark (507
``storage_full``), or that meets a full disk (507 ``disk_full``), stops there and its partial
file is removed; nothing is registered.

Downloads go through the store (:meth:`~igpt_server.store.sessions.SessionStore.download`),
never to the object store directly: with the shared store they are streamed from it, or
answered with a 307 to a presigned URL when ``IGPT_STORE__DOWNLOADS=redirect``.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from igpt_server import media
from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import ArtifactOut
from igpt_server.errors import InsufficientStorage, InvalidInput
from igpt_server.services import Services
from igpt_server.store import Artifact, ArtifactKind
from igpt_server.store.sessions import safe_stem

router = APIRouter(prefix="/api/sessions", tags=["files"])

UploadKind = Literal["image", "audio", "video", "mask"]
_CHUNK = 1024 * 1024


@router.post("/{session_id}/files", status_code=201, response_model=ArtifactOut)
def upload_file(
    session_id: str,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="image, audio or video")],
    # optional form fields: absent, never null (a multipart field cannot be null)
    kind: Annotated[UploadKind, Form(description="what the file is; guessed when absent")] = None,  # type: ignore[assignment]
    parent: Annotated[str, Form(description="for kind=mask: the image it masks")] = None,  # type: ignore[assignment]  # noqa: RUF013
) -> ArtifactOut:
    store = services.store
    store.require(session_id)
    if parent is not None and kind != "mask":
        raise InvalidInput("'parent' is only allowed with kind=mask")
    temp = store.new_upload_file(session_id)
    try:
        _copy(services, session_id, file, temp)
        artifact = (
            _store_mask(services, session_id, temp, parent, file.filename)
            if kind == "mask"
            else _store_media(services, session_id, temp, kind, file.filename)
        )
    finally:
        temp.unlink(missing_ok=True)
    store.append_message(
        session_id, "event", f"uploaded {artifact.kind.value} {artifact.path}", {"upload": artifact.path}
    )
    return ArtifactOut.of(session_id, artifact)


def save_upload(services: Services, session_id: str, file: UploadFile, kind: UploadKind | None) -> Artifact:
    """Stream, check and register one uploaded file (used by other routes, e.g. speech)."""
    temp = services.store.new_upload_file(session_id)
    try:
        _copy(services, session_id, file, temp)
        return _store_media(services, session_id, temp, kind, file.filename)
    finally:
        temp.unlink(missing_ok=True)


def _copy(services: Services, session_id: str, upload: UploadFile, target: Path) -> None:
    """Stream the upload to ``target``, stopping at the first byte past the storage limits."""
    room, past_room = services.store.room(session_id)
    written = 0
    try:
        with target.open("wb") as out:
            while chunk := upload.file.read(_CHUNK):
                written += len(chunk)
                if room is not None and written > room:
                    raise past_room
                out.write(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("the server's disk is full; nothing was stored", code="disk_full") from None
        raise


def _store_media(
    services: Services, session_id: str, temp: Path, kind: UploadKind | None, filename: str | None
) -> Artifact:
    settings = services.settings
    declared = None if kind is None else kind
    if declared == "mask":
        declared = None
    video_caps = media.VideoCaps(settings.max_video_seconds, settings.max_video_pixels)
    info = media.probe_upload(temp, declared, settings.max_image_pixels, settings.max_audio_seconds, video_caps)
    artifact = services.store.add_artifact(
        session_id,
        ArtifactKind(info.kind),
        temp,
        ext=info.ext,
        stem=safe_stem(filename, default="upload"),
        width=info.width,
        height=info.height,
        meta=media.upload_meta(info),
    )
    if artifact.kind is ArtifactKind.image:
        services.store.update_state(session_id, active_image=artifact.path, active_mask=None)
        services.after_image_upload(session_id, artifact.path)
    return artifact


def _store_mask(services: Services, session_id: str, temp: Path, parent: str | None, filename: str | None) -> Artifact:
    if parent is None:
        raise InvalidInput("a mask upload needs 'parent': the path of the image it masks")
    image = services.store.artifact(session_id, parent, (ArtifactKind.image,))
    info = media.probe_image(temp, services.settings.max_image_pixels)
    if (info.width, info.height) != (image.width, image.height):
        raise InvalidInput(
            f"the mask is {info.width}x{info.height} but {parent} is {image.width}x{image.height}; "
            "a mask must have its image's size",
            code="mask_size_mismatch",
        )
    mask = media.read_mask(temp)
    if not mask.any():
        raise InvalidInput("the mask selects nothing: paint the object white on black")
    artifact = services.store.add_artifact(
        session_id,
        ArtifactKind.mask,
        media.encode_png(mask),
        ext="png",
        stem=safe_stem(filename, default="mask"),
        parent=parent,
        width=info.width,
        height=info.height,
    )
    services.store.update_state(session_id, active_image=parent, active_mask=artifact.path)
    return artifact


@router.get(
    "/{session_id}/files/{path:path}",
    response_class=FileResponse,
    responses={307: {"description": "shared store with downloads=redirect: a presigned URL of the object store"}},
)
def download_file(session_id: str, path: str, services: ServicesDep) -> Response:
    """The artifact's bytes: the file (local store, or this replica's cache), a stream from the
    object store, or a 307 to a presigned URL (``IGPT_STORE__DOWNLOADS=redirect``)."""
    download = services.store.download(session_id, path)
    if download.url is not None:
        return RedirectResponse(download.url, status_code=307)
    if download.chunks is not None:
        headers = {} if download.size is None else {"Content-Length": str(download.size)}
        return StreamingResponse(download.chunks, media_type=download.media_type, headers=headers)
    assert download.file is not None
    return FileResponse(download.file, media_type=download.media_type)

"""One error shape for every failure: ``{"error": {"code", "message", "detail"}}``.

Nothing the server knows about itself leaves it in an error: a message that names a file
under the data directory, the model directory, the working directory, the interpreter or the
temporary directory has that path replaced by ``<server path>``, and an unexpected exception
becomes a 500 whose message gives only the request id (``detail.request_id``, also in the
``X-Request-ID`` header); the exception itself goes to the log under that id. A
:class:`~igpt_server.errors.Cancelled` request (499) is the client's choice, not a fault, and
is not logged as one. Errors that can be retried carry ``Retry-After``.

Also the request-body cap: bodies over ``max_upload_bytes`` are refused with 413 from the
``Content-Length`` header, or while streaming when there is none, so an oversized upload is
never held whole in memory or on disk.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from igpt_server import logs
from igpt_server.errors import IgptError

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
SERVER_PATH = "<server path>"


MODEL_DIR = "$IGPT_MODEL_DIR"


def _path_pattern(roots: Iterable[Path | str | None], *, keep_tail: bool) -> re.Pattern[str] | None:
    names: set[str] = set()
    for root in roots:
        if root is None:
            continue
        for variant in (str(root), str(Path(root).resolve())):
            if variant.startswith("/") and len(variant) > 1:
                names.add(variant.rstrip("/"))
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    tail = r"(?=[/\s'\"(),;]|$)" if keep_tail else r"(?:/[^\s'\"(),;]*)?"
    return re.compile(rf"(?:{alternatives}){tail}")


class PathScrubber:
    """Hides the server's own folders in messages.

    A path under the model directory keeps its layout below it (``$IGPT_MODEL_DIR/controlnet/pose``:
    what an administrator must put where, not where the server lives); any other absolute path
    under the server's folders becomes ``<server path>``.
    """

    def __init__(self, roots: Iterable[Path | str | None], model_dir: Path | str | None = None) -> None:
        self._model_dir = _path_pattern([model_dir], keep_tail=True)
        self._pattern = _path_pattern(roots, keep_tail=False)

    def text(self, value: str) -> str:
        if self._model_dir is not None:
            value = self._model_dir.sub(lambda _: MODEL_DIR, value)
        return value if self._pattern is None else self._pattern.sub(SERVER_PATH, value)

    def any(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.any(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.any(v) for v in value)
        if isinstance(value, dict):
            return {k: self.any(v) for k, v in value.items()}
        return value


def default_scrubber(data_dir: Path | None = None, model_dir: Path | None = None) -> PathScrubber:
    return PathScrubber(
        [data_dir, Path.cwd(), sys.prefix, sys.base_prefix, tempfile.gettempdir(), Path.home()], model_dir=model_dir
    )


_scrubber = default_scrubber()


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": _scrubber.text(message), "detail": _scrubber.any(detail)}}
    return JSONResponse(status_code=status, content=body, headers=headers)


def igpt_error_response(exc: IgptError, headers: dict[str, str] | None = None) -> JSONResponse:
    extra = dict(headers or {})
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        extra["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return error_response(exc.status, exc.code, exc.message, exc.detail, extra)


async def send_error(
    exc: IgptError, scope: Scope, receive: Receive, send: Send, headers: dict[str, str] | None = None
) -> None:
    """Answer an ASGI request with ``exc`` in the error shape (for middlewares)."""
    await igpt_error_response(exc, headers)(scope, receive, send)


def scrubbed(value: Any) -> Any:
    """``value`` (text, or JSON-like data) with the server's own paths hidden (see :class:`PathScrubber`)."""
    return _scrubber.any(value)


def error_body(exc: BaseException) -> dict[str, Any]:
    """The error shape for ``exc`` outside a response (an SSE ``error`` event): an
    :class:`IgptError` with server paths scrubbed, anything else logged and shown only by its
    request id."""
    if isinstance(exc, IgptError):
        message, detail = _scrubber.text(exc.message), _scrubber.any(exc.detail)
        return {"error": {"code": exc.code, "message": message, "detail": detail}}
    log.error("unhandled error", exc_info=exc)
    return json.loads(bytes(internal_error_response().body))


def internal_error_response() -> JSONResponse:
    rid = logs.request_id.get() or "-"
    return error_response(
        500,
        "internal_error",
        f"an internal error occurred (request id {rid}); nothing about it is shown here, the server log has it",
        {"request_id": rid},
    )


def install_error_handlers(app: FastAPI, data_dir: Path | None = None, model_dir: Path | None = None) -> None:
    global _scrubber
    _scrubber = default_scrubber(data_dir, model_dir)

    @app.exception_handler(IgptError)
    async def _igpt(_: Request, exc: IgptError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s %s: %s", exc.status, exc.code, exc.message)
        return igpt_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
        return error_response(422, "validation_error", f"{where}: {first.get('msg')}", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return internal_error_response()


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # an HTTPException passes FastAPI's body parsing unchanged (others become 400)
                    raise StarletteHTTPException(413, detail=self._message())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except StarletteHTTPException as exc:
            if exc.status_code != 413 or response_started:
                raise
            await self._refuse(send)

    def _message(self) -> str:
        return (
            f"the request body is over the cap of {self.max_bytes} bytes; send a smaller file "
            "or raise IGPT_MAX_UPLOAD_BYTES"
        )

    async def _refuse(self, send: Send) -> None:
        response = error_response(413, "payload_too_large", self._message())
        await response(  # type: ignore[arg-type]
            {"type": "http", "method": "POST", "headers": []}, _no_receive, send
        )


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}

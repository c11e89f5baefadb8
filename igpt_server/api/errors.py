"""One error shape for every failure: ``{"error": {"code", "message", "detail"}}``.

Also the request-body cap: bodies over ``max_upload_bytes`` are refused with 413 from the
``Content-Length`` header, or while streaming when there is none, so an oversized upload is
never held whole in memory or on disk.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from igpt_server.errors import IgptError

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(status: int, code: str, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, "detail": detail}})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IgptError)
    async def _igpt(_: Request, exc: IgptError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.detail)

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
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")


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

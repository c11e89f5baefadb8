"""The request pipeline around the routes (pure ASGI middlewares, outermost first).

1. :class:`RequestContext`: a request id (the client's ``X-Request-ID`` when it is a short
   token, else a new one) set for logs, answers and the session writer lock; the response
   carries it back. Times the request for ``igpt_request_seconds`` by route template and
   writes one access line.
2. :class:`HostOriginGuard`: a ``Host`` not in ``trusted_hosts`` is a 400 ``host_refused``
   (DNS rebinding); a state-changing request whose ``Origin`` is another site and not in
   ``cors_origins`` is a 403 ``origin_refused`` (a cross-site form or fetch cannot write).
3. CORS (Starlette's), auth (:mod:`igpt_server.auth`), rate limits
   (:mod:`igpt_server.ratelimit`).
4. :class:`SessionWriter`: a state-changing request on ``/api/sessions/{id}/...`` holds that
   session's writer lock (:meth:`SessionStore.writer`) until its answer is sent, streams
   included; it waits at most ``session_lock_timeout_s``, then 409 ``session_busy``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import urlsplit

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from igpt_server import logs
from igpt_server.api.errors import internal_error_response, send_error
from igpt_server.errors import BadRequest, Forbidden, IgptError, SessionBusy
from igpt_server.metrics import Metrics
from igpt_server.store import SessionStore
from igpt_server.store.locks import current_writer, writer_identity

log = logging.getLogger(__name__)
access_log = logging.getLogger("igpt_server.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SESSION_PATH = re.compile(r"^/api/sessions/([0-9a-f]{32})(?:/|$)")
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContext:
    """Request id, session id, timing and the access line of every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        match = _SESSION_PATH.match(scope["path"])
        status = 500
        started = time.monotonic()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        rid_token = logs.request_id.set(rid)
        sid_token = logs.session_id.set(match.group(1) if match else None)
        try:
            # unique even when two clients send the same X-Request-ID
            with writer_identity(f"request-{uuid.uuid4().hex}"):
                await self.app(scope, receive, send_with_id)
        except Exception:
            # the catch-all: logged here under the request id, answered without its text
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            await internal_error_response()(scope, receive, send_with_id)
        finally:
            elapsed = time.monotonic() - started
            route = route_template(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).observe(elapsed)
            access_log.info(
                "%s %s %d %.0f ms",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
                extra={"method": scope["method"], "route": route, "status": status, "ms": round(elapsed * 1000, 1)},
            )
            logs.session_id.reset(sid_token)
            logs.request_id.reset(rid_token)


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Starlette's TrustedHost rules: exact names, ``*.domain`` wildcards, ``*`` for any."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    for pattern in patterns:
        pattern = pattern.strip("[]").lower()
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


class HostOriginGuard:
    """400 for an untrusted ``Host``; 403 for a cross-site state-changing request."""

    def __init__(self, app: ASGIApp, trusted_hosts: list[str] | None, cors_origins: list[str]) -> None:
        self.app = app
        self.trusted_hosts = trusted_hosts
        self.cors_origins = {o.rstrip("/") for o in cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        if self.trusted_hosts is not None and not host_allowed(host, self.trusted_hosts):
            error: IgptError = BadRequest(
                "this server does not answer to that host name; use one of its configured names "
                "(the operator sets IGPT_TRUSTED_HOSTS)",
                code="host_refused",
            )
            await send_error(error, scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS and not self._same_site(scope, host):
            error = Forbidden(
                "a page of another site may not change this server's sessions; open the server's own page, "
                "or the operator adds that origin to IGPT_CORS_ORIGINS",
                code="origin_refused",
            )
            await send_error(error, scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _same_site(self, scope: Scope, host: str) -> bool:
        origin = _header(scope, b"origin")
        if origin is None:
            fetch_site = _header(scope, b"sec-fetch-site")
            return fetch_site in (None, "same-origin", "none")
        if origin.rstrip("/") in self.cors_origins:
            return True
        return urlsplit(origin).netloc.lower() == host.lower()


class SessionWriter:
    """Hold the session's writer lock for a state-changing request on ``/api/sessions/{id}...``."""

    def __init__(self, app: ASGIApp, store: SessionStore, timeout_s: float, metrics: Metrics) -> None:
        self.app = app
        self.store = store
        self.timeout_s = timeout_s
        self.metrics = metrics
        # waiting for a lock must not take the threads the routes run on
        self.limiter = anyio.CapacityLimiter(256)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _SESSION_PATH.match(scope.get("path", ""))
        if scope["type"] != "http" or match is None or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        session_id = match.group(1)
        locks = self.store.locks
        owner = current_writer()
        try:
            lease = await anyio.to_thread.run_sync(
                lambda: locks.acquire(session_id, self.timeout_s, owner), limiter=self.limiter
            )
        except IgptError as exc:  # the shared store's lock database is down: 503 store_unavailable
            await send_error(exc, scope, receive, send)
            return
        if lease is None:
            self.metrics.refusals.labels("session_busy").inc()
            error = SessionBusy(
                "another request is still changing this session; wait for it to finish and retry",
                retry_after=max(1.0, self.timeout_s / 4),
            )
            await send_error(error, scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            locks.release(lease)


def route_template(scope: Scope) -> str:
    """The matched route's template (``/api/sessions/{session_id}``), for metrics labels.

    The router records the route it matched in ``scope["route"]``; the page's static files
    are ``static``, a request that matched nothing ``unmatched`` (bounded label values).
    """
    route = scope.get("route")
    if route is None:
        return "unmatched"
    path = getattr(route, "path", "")
    return str(path) if path else "static"

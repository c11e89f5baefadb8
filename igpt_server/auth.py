"""Identity: API keys (hashed at rest, each with a name) and the auth mode.

* ``auth = "none"``: no key is asked. Only allowed on a loopback address unless the operator
  says ``--insecure`` (:func:`check_exposure`).
* ``auth = "keys"``: every API call needs a key, sent as ``Authorization: Bearer <key>`` or,
  for ``<img src>`` and downloads that cannot send headers, as the cookie ``igpt_key`` (the
  page sets it itself, ``SameSite=Strict``). A missing key is a 401 ``auth_required``, an
  unknown one a 401 ``auth_invalid``. A session belongs to the key that created it; another
  key gets 404 for it (:mod:`igpt_server.store.owner`).

Keys are random 256-bit tokens (``igpt-server --make-key NAME`` prints one and its settings
line); only their SHA-256 is stored (``api_keys = {name = "sha256:<hex>"}``). A fast hash is
right for such tokens (no dictionary to attack, unlike passwords), and it keeps the check
cheap enough for every request. Comparison is constant-time.

Public without a key: ``/api/health`` (it tells the page whether to ask for a key),
``/api/ready``, the OpenAPI pages, the page's static files, and ``/metrics`` when
``metrics_public`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from igpt_server.api.errors import send_error
from igpt_server.errors import Unauthorized
from igpt_server.settings import Settings
from igpt_server.store.owner import acting_as

COOKIE = "igpt_key"
_PUBLIC_API = {"/api/health", "/api/ready"}
_DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def hash_key(key: str) -> str:
    """The stored form of a key: ``sha256:<64 hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return "igpt_" + secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, insecure: bool) -> None:
    """Refuse settings that would publish the server without keys; raise :class:`SystemExit`."""
    mode = settings.auth_mode()
    if mode == "keys" and not settings.api_keys:
        raise SystemExit("auth = 'keys' but no api_keys are configured; add one (igpt-server --make-key NAME)")
    if mode == "none" and not is_loopback(settings.host) and not insecure:
        raise SystemExit(
            f"refusing to serve {settings.host} without API keys: anyone who reaches the port could use it. "
            "Configure keys (igpt-server --make-key NAME, then IGPT_API_KEYS=NAME=sha256:...), bind 127.0.0.1, "
            "or pass --insecure if a proxy in front does the authentication"
        )


class KeyRing:
    """The configured keys: ``identify(key)`` gives the key's name or ``None``."""

    def __init__(self, hashed: dict[str, str]) -> None:
        self._hashed = [(name, digest.encode()) for name, digest in hashed.items()]

    def identify(self, key: str) -> str | None:
        presented = hash_key(key).encode()
        found = None
        for name, digest in self._hashed:  # no early exit: constant time over the key list
            if hmac.compare_digest(presented, digest):
                found = name
        return found


def presented_key(scope: Scope) -> str | None:
    """The key of a request: the Bearer token, else the ``igpt_key`` cookie."""
    headers = dict(scope.get("headers") or [])
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    cookie = headers.get(b"cookie")
    if cookie:
        try:
            jar = SimpleCookie(cookie.decode("latin-1"))
        except CookieError:
            return None
        if COOKIE in jar and jar[COOKIE].value:
            return unquote(jar[COOKIE].value)  # the page sets it with encodeURIComponent
    return None


def is_public(path: str, metrics_public: bool) -> bool:
    if path in _PUBLIC_API or path in _DOCS or (metrics_public and path == "/metrics"):
        return True
    return not (path.startswith("/api/") or path == "/api" or path == "/metrics")


class AuthMiddleware:
    """ASGI: identify the key, refuse calls without a valid one, and act as the key's name."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.enabled = settings.auth_mode() == "keys"
        self.keys = KeyRing(settings.api_keys)
        self.metrics_public = settings.metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if is_public(scope["path"], self.metrics_public):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        name = None if key is None else self.keys.identify(key)
        if name is None:
            error = (
                Unauthorized(
                    "this server needs an API key: send 'Authorization: Bearer <key>' (ask the operator for a key)",
                    code="auth_required",
                )
                if key is None
                else Unauthorized(
                    "the API key is not valid on this server; check it or ask the operator for a new one",
                    code="auth_invalid",
                )
            )
            await send_error(error, scope, receive, send, headers={"WWW-Authenticate": 'Bearer realm="igpt"'})
            return
        scope.setdefault("state", {})["principal"] = name
        with acting_as(name):
            await self.app(scope, receive, send)

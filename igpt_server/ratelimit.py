"""Per-key rate limits: requests per minute and concurrent turns.

* ``rate_limit_per_minute``: a moving one-minute window per key (``limits``' in-memory
  moving window; a shared deployment can switch its storage to Redis by URI). Past it: 429
  ``rate_limited`` with ``Retry-After`` (when the oldest request in the window expires).
* ``max_concurrent_turns``: the work-starting calls of one key running at once (a chat turn,
  its stream, a speech turn, a gesture, a direct tool call). Past it: 429 ``too_many_turns``.

The key is the API key's name; without auth, the client's address. Both are off by default
(a loopback server for one person); the Docker images turn them on.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from igpt_server.api.errors import send_error
from igpt_server.errors import TooManyRequests
from igpt_server.metrics import Metrics
from igpt_server.settings import Settings

#: POST routes that start work (a turn); the concurrent-turns limit counts these
TURN_PATH = re.compile(r"^/api/(sessions/[^/]+/(chat|chat/stream|speech|gesture)|tools/[^/]+)$")


def client_key(scope: Scope) -> str:
    state = scope.get("state") or {}
    principal = state.get("principal")
    if principal:
        return f"key:{principal}"
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


class TurnCounter:
    """Turns running now per key. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()

    def enter(self, key: str) -> bool:
        with self._lock:
            if self._running[key] >= self.limit:
                return False
            self._running[key] += 1
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            self._running[key] -= 1
            if self._running[key] <= 0:
                del self._running[key]


class RateLimitMiddleware:
    """ASGI: refuse with 429 past the per-key request rate or concurrent turns."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        per_minute = settings.rate_limit_per_minute
        self.item = RateLimitItemPerMinute(per_minute) if per_minute else None
        self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.turns = TurnCounter(settings.max_concurrent_turns) if settings.max_concurrent_turns else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/api/") or path == "/metrics"):
            await self.app(scope, receive, send)
            return
        key = client_key(scope)
        if self.item is not None and not self.limiter.hit(self.item, key):
            reset, _remaining = self.limiter.get_window_stats(self.item, key)
            self.metrics.refusals.labels("rate_limited").inc()
            error = TooManyRequests(
                f"more than {self.item.amount} requests in a minute from this key; slow down and retry",
                retry_after=max(1.0, math.ceil(reset - time.time())),
            )
            await send_error(error, scope, receive, send)
            return
        is_turn = scope.get("method") == "POST" and TURN_PATH.match(path) is not None
        if self.turns is None or not is_turn:
            await self.app(scope, receive, send)
            return
        if not self.turns.enter(key):
            self.metrics.refusals.labels("turns").inc()
            error = TooManyRequests(
                f"this key already runs {self.turns.limit} turns at once; wait for one to finish",
                code="too_many_turns",
                retry_after=2.0,
            )
            await send_error(error, scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.turns.leave(key)

"""Who is acting: the API key's name of the current request, for session ownership.

The auth middleware sets it with :func:`acting_as`; the store stamps it on new sessions and
refuses (as *not found*, so ids cannot be probed) sessions that belong to another key. It is
``None`` when auth is off and in code outside a request (tests, background threads): then no
ownership check applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_principal: ContextVar[str | None] = ContextVar("igpt_principal", default=None)


@contextmanager
def acting_as(principal: str | None) -> Iterator[None]:
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


def current_principal() -> str | None:
    return _principal.get()

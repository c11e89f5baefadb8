"""Every route declares its error answers in the OpenAPI, with the one error model.

:func:`declare_errors` runs once the routes are in (from the app factory), so routes added
later by any module get the same treatment: which statuses a route can answer is derived from
what it is (public or not, has a session or a body, writes, takes a file), and a route's own
``responses=`` entries win.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

from igpt_server.api.schemas import ErrorOut

DESCRIPTIONS = {
    400: "bad request, or a Host this server does not answer to (host_refused)",
    401: "no API key (auth_required) or an unknown one (auth_invalid)",
    403: "a state-changing call from another site's page (origin_refused)",
    404: "no such session (or another key's, or expired: session_expired), artifact or tool",
    409: "another request is still changing this session (session_busy, with Retry-After)",
    413: "the body is over the byte cap, a clip is too long, or the session's quota is used (quota_exceeded)",
    415: "the file does not decode as the kind it claims",
    422: "invalid input: validation_error, or content that cannot be used (the code says which)",
    429: "a per-key limit: rate_limited or too_many_turns (with Retry-After)",
    500: "a fault of the server; detail.request_id finds it in the log",
    503: "a tool, model or the LLM cannot answer now: tool_unavailable, busy (with Retry-After), out_of_memory",
    507: "the server's storage is full (storage_full, disk_full)",
}
_PUBLIC = {"/api/health", "/api/ready"}
_SAFE = {"GET", "HEAD"}


def statuses_of(route: APIRoute) -> set[int]:
    """The error statuses ``route`` can answer."""
    found = {400, 500}
    if route.path not in _PUBLIC:
        found |= {401, 429}
    dependant = route.dependant
    has_params = bool(dependant.path_params or dependant.query_params or dependant.body_params)
    if has_params:
        found.add(422)
    if dependant.path_params or dependant.body_params:
        found.add(404)
    if not (route.methods or set()) <= _SAFE:
        found |= {403, 409, 413, 503, 507}
    if any(getattr(p.field_info, "media_type", "") == "multipart/form-data" for p in dependant.body_params):
        found.add(415)
    if route.path.startswith("/api/tools/"):
        found.add(503)
    return found


def declare_errors(routers: list[APIRouter]) -> None:
    """Add the error answers of every route of ``routers`` to its OpenAPI ``responses``.

    Call it before the routers are included (the app builds its routes from these).
    Idempotent: the routers are module-level and shared by every app of the process.
    """
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                _declare(route)


def _declare(route: APIRoute) -> None:
    for status in sorted(statuses_of(route)):
        entry: dict[str, Any] = route.responses.setdefault(status, {})
        entry.setdefault("model", ErrorOut)
        entry.setdefault("description", DESCRIPTIONS[status])
    _refresh_response_fields(route)


def _refresh_response_fields(route: APIRoute) -> None:
    """Rebuild the route's response models (FastAPI builds them in APIRoute.__init__)."""
    from fastapi.utils import create_model_field

    for code, response in route.responses.items():
        model = response.get("model")
        if model is not None:
            route.response_fields[code] = create_model_field(
                name=f"Response_{code}_{route.unique_id}", type_=model, mode="serialization"
            )

"""Logging: one line per event, as text or JSON, tagged with the request and session ids.

The request middleware sets :data:`request_id` and :data:`session_id` for the request it
serves; :class:`ContextFilter` copies them onto every record logged while it runs (in any
thread of the request), so a 500's answer (which carries the request id) can be found in the
log. ``log_format = "json"`` writes one JSON object a line (python-json-logger), the shape log
shippers read.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

request_id: ContextVar[str | None] = ContextVar("igpt_request_id", default=None)
session_id: ContextVar[str | None] = ContextVar("igpt_session_id", default=None)

TEXT_FORMAT = "%(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(session_id)s"


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``session_id`` (``-`` outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        record.session_id = session_id.get() or "-"
        return True


def configure(log_format: str = "text", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send the root logger (and uvicorn's) to ``stream`` (stderr) in ``log_format`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # the request middleware writes one access line per request, with its id
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)

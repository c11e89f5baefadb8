"""Load the models at start-up, in the background, so the first request does not wait.

:func:`warm_up` is meant for the server's background executor right after start-up::

    services.submit_background("warm-up", functools.partial(warm_up, services))

It warms, one after the other, every part that declares a warm-up hook:

* each available tool's chosen backend with a ``warm_up(settings, pool)`` method (OCR reader,
  segmenter network...);
* the speech recognizer, when it has a ``warm_up()`` method;
* the controller's LLM (:meth:`Controller.warm_up`: only when it will be consulted; the
  embedded SmolLM2 is not, by default, so nothing is loaded for it).

:func:`loading_status` tells what is still loading (for ``/api/health`` and the page):
``{"ocr": "ready", "segment": "loading", "llm": "not needed", "speech": "failed: ..."}``
("not available": the server has no backend for the part, e.g. no speech model installed).
A failure is logged and reported; it never stops the server (the part loads on first use).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

log = logging.getLogger(__name__)

_status: dict[str, str] = {}
_lock = threading.Lock()


def loading_status() -> dict[str, str]:
    """What the warm-up has done so far: part -> "waiting", "loading", "ready", "not needed",
    "not available" or "failed: <reason>". Empty before :func:`warm_up` started."""
    with _lock:
        return dict(_status)


def still_loading() -> list[str]:
    """The parts not loaded yet (waiting or loading)."""
    return sorted(name for name, state in loading_status().items() if state in ("waiting", "loading"))


def _set(name: str, state: str) -> None:
    with _lock:
        _status[name] = state


def warm_up(services: Any) -> dict[str, str]:
    """Warm every part that has a hook (see the module docstring); returns the final status.
    The status starts afresh: it describes this call's ``services`` only."""
    with _lock:
        _status.clear()
    steps: list[tuple[str, Callable[[], Any]]] = []
    registry = services.registry
    for name in registry.available_names():
        backend = registry.backend_for(name)
        hook = getattr(backend, "warm_up", None)
        if callable(hook):
            steps.append((name, partial(hook, services.settings, services.pool)))
    speech_hook = getattr(services.speech, "warm_up", None)
    speech_info = getattr(services.speech, "info", None)
    if callable(speech_info) and not speech_info().available:
        _set("speech", "not available")  # /api/speech says why; nothing to load
    elif callable(speech_hook):
        steps.append(("speech", speech_hook))
    controller = services.controller
    if controller.llm is not None and controller.will_consult_llm():
        steps.append(("llm", controller.warm_up))
    else:
        _set("llm", "not needed")
    for name, _ in steps:
        _set(name, "waiting")
    for name, step in steps:
        _set(name, "loading")
        try:
            step()
        except Exception as exc:  # reported, never raised: the part loads on first use instead
            log.warning("warm-up of %s failed: %s", name, exc)
            _set(name, f"failed: {type(exc).__name__}: {exc}"[:300])
        else:
            _set(name, "ready")
    return loading_status()

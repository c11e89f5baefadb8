"""The app factory: ``create_app(settings)`` wires services, routes, errors and the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from igpt_server import __version__
from igpt_server.api import active, chat, files, gesture, health, sessions, speech, tools
from igpt_server.api.errors import BodySizeLimit, install_error_handlers
from igpt_server.services import Services
from igpt_server.settings import Settings


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """A ready app: the API under ``/api``, OpenAPI at ``/docs``, the canvas page at ``/``."""
    settings = settings or Settings()
    services = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(
        title="iGPT server",
        version=__version__,
        description="Talk to images while pointing at them. Every feature is a REST call.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    for module in (health, sessions, files, tools, active, chat, speech, gesture):
        app.include_router(module.router)
    _mount_frontend(app)
    return app


def _mount_frontend(app: FastAPI) -> None:
    from igpt_frontend import FRONTEND_DIR

    app.mount("/", StaticFiles(directory=FRONTEND_DIR, html=True), name="frontend")

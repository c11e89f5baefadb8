"""The app factory: ``create_app(settings)`` wires services, routes, errors and the page.

The request pipeline (outermost first; see :mod:`igpt_server.api.middleware`): request id
and timing, trusted hosts and same-site writes, CORS (when ``cors_origins`` is set), API keys
(:mod:`igpt_server.auth`), per-key rate limits (:mod:`igpt_server.ratelimit`), the session
writer lock, the body-size cap, then the routes. At start-up the store is swept
(:func:`~igpt_server.store.sweep.startup_sweep`) and the idle-session sweeper starts; it
stops at shutdown. With ``warm_up`` on (the default), the models load on the background
executor right after start-up (:func:`~igpt_server.controller.warmup.warm_up`); requests are
served meanwhile, and ``/api/health`` says what is still loading.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from igpt_server import __version__
from igpt_server.api import active, chat, files, gesture, health, sessions, speech, tools
from igpt_server.api import history as history_routes
from igpt_server.api.errors import BodySizeLimit, install_error_handlers
from igpt_server.api.middleware import HostOriginGuard, RequestContext, SessionWriter
from igpt_server.api.openapi import declare_errors
from igpt_server.auth import AuthMiddleware
from igpt_server.controller.warmup import warm_up
from igpt_server.ratelimit import RateLimitMiddleware
from igpt_server.services import Services
from igpt_server.settings import Settings
from igpt_server.store.sweep import IdleSweeper, startup_sweep


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """A ready app: the API under ``/api``, OpenAPI at ``/docs``, the canvas page at ``/``."""
    settings = settings or Settings()
    services = services or Services.build(settings)
    metrics = services.runner.metrics
    metrics.bind(services)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        startup_sweep(services.store)
        sweeper = IdleSweeper(services.store, settings.sweep_interval_s)
        sweeper.start()
        if settings.warm_up:
            services.submit_background("warm-up", partial(warm_up, services))
        try:
            yield
        finally:
            sweeper.stop()
            services.close()

    app = FastAPI(
        title="iGPT server",
        version=__version__,
        description="Talk to images while pointing at them. Every feature is a REST call.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app, settings.data_dir, settings.model_dir)
    routers = [m.router for m in (health, sessions, files, tools, active, chat, speech, gesture, history_routes)]
    declare_errors(routers)
    for router in [*routers, health.metrics_router]:
        app.include_router(router)
    _mount_frontend(app)
    # added innermost first
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(SessionWriter, store=services.store, timeout_s=settings.session_lock_timeout_s, metrics=metrics)
    app.add_middleware(RateLimitMiddleware, settings=settings, metrics=metrics)
    app.add_middleware(AuthMiddleware, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(HostOriginGuard, trusted_hosts=settings.trusted_hosts, cors_origins=settings.cors_origins)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


def _mount_frontend(app: FastAPI) -> None:
    from igpt_frontend import FRONTEND_DIR

    app.mount("/", StaticFiles(directory=FRONTEND_DIR, html=True), name="frontend")

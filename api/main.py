"""The app factory: lifespan (database, indexes), middleware, routers, error handlers."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from api import asyncapi, transports
from api.config import Environment, Settings
from api.database import Client, connect
from api.errors import install_error_handlers
from api.live import LiveFeed
from api.logs import configure_logging
from api.metrics import Metrics
from api.middleware import BodyLimit, RequestContext
from api.outbox import OutboxWorker
from api.pagination import CursorCodec
from api.routes import API_PREFIX, auth, health, items, live, recovery, users
from api.security import TokenSigner, verify_against_dummy
from api.services import Services

log = logging.getLogger("docstore")

DESCRIPTION = """
A JSON document store on MongoDB. Sign up with `POST /api/v1/users`, then use
**Authorize** (your email or username and password) to try every endpoint.
Errors are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app: FastAPI = FastAPIOffline(
        title="Docstore",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan(settings),
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    for module in (auth, recovery, users, items, live):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    asyncapi.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location", "Retry-After", "X-Request-ID"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    hsts = settings.environment is Environment.production
    app.state.metrics = Metrics()
    app.add_middleware(RequestContext, hsts=hsts, metrics=app.state.metrics)
    return app


def _lifespan(settings: Settings) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, settings.mongodb_socket_timeout_ms) as client:
            services = app.state.services = await _services(settings, client)
            # Warm the dummy hash so the first unknown-user login costs what later ones do.
            await verify_against_dummy("warm-up", settings.bcrypt_rounds)
            if settings.outbox_worker:
                services.outbox.start()
            await _start_live_feed(services)
            try:
                yield
            finally:
                if services.live is not None:
                    await services.live.stop()
                await services.outbox.stop()

    return lifespan


async def _services(settings: Settings, client: Client) -> Services:
    secret = await asyncio.to_thread(lambda: settings.signing_secret)
    hello = await client.admin.command("hello")
    replicated = "setName" in hello or hello.get("msg") == "isdbgrid"
    return Services(
        settings=settings,
        client=client,
        signer=TokenSigner(
            secret,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.access_token_expire_minutes * 60,
            settings.previous_secret_keys,
        ),
        cursors=CursorCodec(secret),
        supports_transactions=replicated,
        outbox=OutboxWorker(settings, transports.build(settings)),
        # Change streams, like transactions, need a replica set (or mongos).
        live=LiveFeed(client[settings.mongodb_db], settings.live_queue_size)
        if replicated and settings.live_feed
        else None,
    )


async def _start_live_feed(services: Services) -> None:
    if services.live is None:
        if services.settings.live_feed:
            log.warning(
                "this MongoDB has no change streams (a standalone server): "
                "WS /api/v1/ws/items will refuse connections with 1011"
            )
        return
    await services.live.enable_images()
    services.live.start()
    # Wait (briefly) until the stream is open, so no change after startup is missed.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(services.live.ready.wait(), 5)


def app_from_env() -> FastAPI:
    """Uvicorn factory: `uvicorn --factory api.main:app_from_env`."""
    return create_app()

"""The app factory: lifespan (database, indexes), middleware, routers, error handlers."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp

from api.accounts import auth, passwords, recovery, token_routes, users
from api.accounts.openapi import describe_security
from api.accounts.passwords import HashingBusy, verify_against_dummy
from api.accounts.tokens import TokenSigner
from api.config import API_PREFIX, Environment, Settings
from api.core.database import Client, connect
from api.core.errors import describe_problems, install_error_handlers
from api.core.logs import configure_logging
from api.core.metrics import Metrics
from api.core.middleware import BodyLimit, RequestContext
from api.core.pagination import CursorCodec, SealedCursorCodec
from api.core.services import Services
from api.items import batch
from api.items import routes as items
from api.items.query import WHERE_DESCRIPTION, where_schemas
from api.live import asyncapi, feed, handoff
from api.live import routes as live
from api.live.feed import LiveFeed
from api.mail import outbox, transports
from api.mail.outbox import OutboxWorker, Sealer
from api.operations import routes as operations
from documents.free_json import data_value_schemas

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
        generate_unique_id_function=_operation_id,
    )
    install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    for module in (auth, token_routes, recovery, users, batch, items, live):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(operations.router)
    asyncapi.install(app)
    _describe_items(app, settings)
    handoff.install(app)
    batches = {f"{API_PREFIX}{batch.BATCH_PATH}": settings.batch_max_bytes}
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, larger=batches)
    metrics = app.state.metrics = Metrics()
    app.state.live = None  # until the lifespan opens a feed (and when it cannot)
    feed.instrument(metrics, lambda: app.state.live)
    outbox.instrument(metrics)
    _outermost(app, settings, metrics)
    return app


def _operation_id(route: APIRoute) -> str:
    """Operation ids are the handlers' names (`create_item`, `list_items`): what a
    generated client calls its functions. (FastAPI's default appends path and method.)"""
    return route.name


def _outermost(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Put the request context and CORS around everything, Starlette's own error
    middleware too (`add_middleware` would put them inside it): a 500 or a 413 then
    carries the request id, the security and the CORS headers, and the 500's log line
    its request id, like every other response."""
    build = app.build_middleware_stack
    hsts = settings.environment is Environment.production

    def build_around() -> ASGIApp:
        inner = build()
        if settings.cors_origins:
            inner = CORSMiddleware(
                inner,
                allow_origins=settings.cors_origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=[
                    "ETag",
                    "Location",
                    "Retry-After",
                    "X-Request-ID",
                    "X-Feed-Cursor",
                    "Idempotent-Replayed",
                ],
            )
        return RequestContext(inner, hsts=hsts, metrics=metrics)

    app.build_middleware_stack = build_around  # type: ignore[method-assign]


def _lifespan(settings: Settings) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = settings.hashing_threads or passwords.api_threads()
        with passwords.hashing_pool(threads, settings.bcrypt_max_waiting):
            async with _running(app, settings):
                yield

    return lifespan


@asynccontextmanager
async def _running(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    async with connect(settings, settings.mongodb_socket_timeout_ms) as client:
        secret = await asyncio.to_thread(lambda: settings.signing_secret)
        hello = await client.admin.command("hello")
        replicated = "setName" in hello or hello.get("msg") == "isdbgrid"
        cursors, feed_cursors = CursorCodec(secret), SealedCursorCodec(secret)
        app.state.services = Services(settings, client, cursors, replicated, feed_cursors)
        app.state.signer = _signer(settings, secret)
        sealer = Sealer(secret, settings.previous_secret_keys)
        outbox_worker = OutboxWorker(settings, transports.build(settings), sealer)
        app.state.outbox = outbox_worker
        await outbox.settle_legacy(settings.outbox_retention_days)
        # Warm the dummy hash so the first unknown-user login costs what later ones do; a
        # CPU too busy for it now must not keep the process from starting (the first
        # unknown-user login then makes it).
        try:
            await verify_against_dummy("warm-up", settings.bcrypt_rounds)
        except HashingBusy:
            log.warning("the CPU was too busy to warm the dummy hash at start-up")
        live_feed = None
        try:
            if settings.outbox_worker:
                outbox_worker.start()
            metrics: Metrics = app.state.metrics
            live_feed = app.state.live = await _start_live_feed(
                settings, client, replicated, lambda: metrics.skipped("live")
            )
            yield
        finally:
            if live_feed is not None:
                await live_feed.stop()
            await outbox_worker.stop()


def _describe_items(app: FastAPI, settings: Settings) -> None:
    """What FastAPI cannot derive: the schemas an item's `data` refers to (one per
    nesting level left), `where` as the JSON it is, with its own schema, and sign-up's
    optional token (FastAPI appends `openapi_extra`'s security to its own)."""
    previous = app.openapi
    described: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if described:  # built once, as FastAPI's own is
            return described
        document = previous()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(data_value_schemas())
        schemas.update(where_schemas())
        for parameter in document["paths"][f"{API_PREFIX}/items"]["get"]["parameters"]:
            if parameter["name"] == "where":
                parameter.pop("schema", None)
                parameter["description"] = WHERE_DESCRIPTION
                schema = {"$ref": "#/components/schemas/WhereFilter0"}
                parameter["content"] = {"application/json": {"schema": schema}}
        document["paths"][f"{API_PREFIX}/users"]["post"]["security"] = [
            {},  # open registration: no token needed
            {"OAuth2PasswordBearer": []},  # a superuser's lets them create superusers
        ]
        operations = schemas["Batch"]["properties"]["operations"]
        operations["maxItems"] = settings.batch_max_operations  # the setting, not the cap
        describe_security(document)
        describe_problems(document)
        described.update(document)
        return described

    app.openapi = openapi  # type: ignore[method-assign]


def _signer(settings: Settings, secret: str) -> TokenSigner:
    return TokenSigner(
        secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.access_token_expire_minutes * 60,
        settings.previous_secret_keys,
    )


async def _start_live_feed(
    settings: Settings, client: Client, replicated: bool, skipped: Callable[[], None]
) -> LiveFeed | None:
    """This process's change-stream watcher, listening; None when the feed is off or the
    server has none (change streams, like transactions, need a replica set or mongos)."""
    if not settings.live_feed:
        return None
    if not replicated:
        log.warning(
            "this MongoDB has no change streams (a standalone server): "
            "WS /api/v1/ws/items will refuse connections with 1011"
        )
        return None
    live_feed = LiveFeed(client[settings.mongodb_db], settings.live_queue_size, skipped)
    await live_feed.enable_images()
    live_feed.start()
    # Wait (briefly) until the stream is open, so no change after startup is missed.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(live_feed.ready.wait(), 5)
    return live_feed


def app_from_env() -> FastAPI:
    """Uvicorn factory: `uvicorn --factory api.main:app_from_env`."""
    return create_app()

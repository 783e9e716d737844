"""The app factory: lifespan (database, indexes), middleware, routers, error handlers."""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline
from opentelemetry import _logs as otel_logs
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace

from api import openapi
from api.accounts import auth, passwords, recovery, token_routes, users
from api.accounts.passwords import HashingBusy, verify_against_dummy
from api.accounts.security_log import remove_events_of
from api.accounts.tokens import TokenSigner
from api.config import API_PREFIX, Environment, Settings
from api.core import queue
from api.core.database import Client, connect, has_transactions
from api.core.errors import install_error_handlers
from api.core.logs import configure_logging
from api.core.metrics import Metrics
from api.core.middleware import BodyLimit, RequestContext, Unexpected
from api.core.pagination import CursorCodec, SealedCursorCodec
from api.core.queue import DurableQueue, Sealer
from api.core.routing import RouteTable
from api.core.services import Services
from api.items import batch, history_routes, read_route, share_routes, trash
from api.items import routes as items
from api.items.cleanup import remove_items_of
from api.items.sharing import give_readers
from api.live import asyncapi, feed
from api.live import routes as live
from api.live.feed import LiveFeed
from api.live.handoff import FeedCursor
from api.mail import transports
from api.mail.channel import EmailChannel, settle_legacy
from api.operations import routes as operations
from api.webhooks import routes as webhooks
from api.webhooks.channel import WebhookChannel
from api.webhooks.dispatcher import Dispatcher
from api.webhooks.transport import Transport
from documents import Item

log = logging.getLogger("docstore")

DESCRIPTION = """
A JSON document store on MongoDB. Sign up with `POST /api/v1/users`, then use
**Authorize** (your email or username and password) to try every endpoint.
Errors are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    metrics = Metrics()
    live_subscribers = feed.instrument(metrics)
    app: FastAPI = FastAPIOffline(
        title="Docstore",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan(settings, metrics, live_subscribers),
        swagger_ui_parameters={"persistAuthorization": True},
        generate_unique_id_function=_operation_id,
        telemetry=_telemetry(),
    )
    api = APIRouter(prefix=API_PREFIX)
    # `/items/batch` and `/items/trash` before `/items/{item_id}`, which would take them.
    routers = (
        *(auth, token_routes, recovery, users),
        *(batch, trash, items, share_routes, history_routes, live, webhooks),
    )
    for module in routers:
        api.include_router(module.router)
    app.include_router(api)
    read_route.install(app)
    app.include_router(operations.router)
    app.include_router(asyncapi.router)
    routes = RouteTable(app.routes)  # read once every router is in
    install_error_handlers(app, routes)
    openapi.install(app, settings)
    _add_middleware(app, settings, metrics, routes)
    queue.instrument(metrics, unnamed=EmailChannel.name)
    return app


def _telemetry() -> TelemetryConfig:
    """FastAPI's OpenTelemetry spans, metrics and logs, when the deployment asks for
    OpenTelemetry: an `OTEL_*` or `FASTAPI_OTEL_*` variable, or a tracer, meter or
    logger provider set before the app is built. Otherwise they are off: unconfigured,
    they record nothing, yet ask on every request whether a provider has appeared
    since, which costs about a fifth of what the rest of our middleware does."""
    asked = any(name.startswith(("OTEL_", "FASTAPI_OTEL_")) for name in os.environ)
    providers = (
        otel_trace.get_tracer_provider(),
        otel_metrics.get_meter_provider(),
        otel_logs.get_logger_provider(),
    )
    if asked or any(_set_up(provider) for provider in providers):
        return {}
    return {"tracing": False, "metrics": False, "logs": False}


# What OpenTelemetry's API hands out before any provider is set (as FastAPI tells them).
_UNSET_PROVIDERS = {
    ("opentelemetry.trace", "ProxyTracerProvider"),
    ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
    ("opentelemetry._logs._internal", "ProxyLoggerProvider"),
}


def _set_up(provider: object) -> bool:
    kind = type(provider)
    return (kind.__module__, kind.__name__) not in _UNSET_PROVIDERS


def _operation_id(route: APIRoute) -> str:
    """Operation ids are the handlers' names (`create_item`, `list_items`): what a
    generated client calls its functions. (FastAPI's default appends path and method.)"""
    return route.name


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics, routes: RouteTable) -> None:
    """Innermost first (each `add_middleware` wraps what was added before). The request
    context and CORS are outermost, with the 500 problem inside them: every answer, a 500
    and a 413 included, carries the request id, the security and the CORS headers, and
    the 500's log line its request id."""
    app.add_middleware(FeedCursor)
    batches = {f"{API_PREFIX}{batch.BATCH_PATH}": settings.batch_max_bytes}
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, larger=batches)
    app.add_middleware(Unexpected)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
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
    hsts = settings.environment is Environment.production
    app.add_middleware(RequestContext, hsts=hsts, metrics=metrics, routes=routes)


def _lifespan(
    settings: Settings, metrics: Metrics, live_subscribers: Callable[[float], None]
) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = settings.hashing_threads or passwords.api_threads()
        with passwords.hashing_pool(threads, settings.bcrypt_max_waiting):
            async with _running(app, settings, metrics, live_subscribers):
                yield

    return lifespan


@asynccontextmanager
async def _running(
    app: FastAPI, settings: Settings, metrics: Metrics, live_subscribers: Callable[[float], None]
) -> AsyncIterator[None]:
    async with connect(settings, settings.mongodb_socket_timeout_ms) as client:
        secret = await asyncio.to_thread(lambda: settings.signing_secret)
        replicated = await has_transactions(client)
        cursors, feed_cursors = CursorCodec(secret), SealedCursorCodec(secret)
        services = Services(settings, client, cursors, replicated, feed_cursors, metrics)
        services.add(_signer(settings, secret))
        email = EmailChannel(
            transports.build(settings),
            settings.mail_from,
            settings.outbox_max_attempts,
            settings.outbox_backoff_s,
        )
        transport = Transport(settings.webhook_timeout_s, settings.webhook_networks)
        webhook = WebhookChannel(transport, settings, metrics)
        sealer = Sealer(secret, settings.previous_secret_keys)
        work = DurableQueue(
            settings, [email, webhook], sealer, default=email.name,
            per_lane=settings.webhook_max_in_flight,
        )  # fmt: skip
        webhook.queue = work
        services.add(work)
        services.add(webhook)
        # Webhooks first: the dispatcher, reading the deletion in order, then sees no
        # webhook left to tell of the account's items going.
        services.account_cleanups.append(webhook.remove_webhooks_of)
        services.account_cleanups.append(remove_items_of)
        services.account_cleanups.append(remove_events_of)
        app.state.services = services
        await settle_legacy(settings.outbox_retention_days)
        await give_readers()
        # Warm the dummy hash so the first unknown-user login costs what later ones do; a
        # CPU too busy for it now must not keep the process from starting (the first
        # unknown-user login then makes it).
        try:
            await verify_against_dummy("warm-up", settings.bcrypt_rounds)
        except HashingBusy:
            log.warning("the CPU was too busy to warm the dummy hash at start-up")
        live_feed = dispatcher = None
        try:
            if settings.outbox_worker:
                work.start()
            live_feed = await _start_live_feed(
                settings, client, replicated, metrics, live_subscribers
            )
            if live_feed is not None:
                services.add(live_feed)
            dispatcher = await _start_dispatcher(settings, client, replicated, work, metrics)
            if dispatcher is not None:
                services.add(dispatcher)
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            if live_feed is not None:
                await live_feed.stop()
            await work.stop()
            await transport.close()


def _signer(settings: Settings, secret: str) -> TokenSigner:
    return TokenSigner(
        secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.access_token_expire_minutes * 60,
        settings.previous_secret_keys,
    )


async def _start_live_feed(
    settings: Settings,
    client: Client,
    replicated: bool,
    metrics: Metrics,
    live_subscribers: Callable[[float], None],
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
    live_feed = LiveFeed(
        client[settings.mongodb_db],
        settings.live_queue_size,
        skipped=lambda: metrics.skipped("live"),
        counted=live_subscribers,
    )
    await live_feed.enable_images()
    live_feed.start()
    # Wait (briefly) until the stream is open, so no change after startup is missed.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(live_feed.ready.wait(), 5)
    return live_feed


async def _start_dispatcher(
    settings: Settings, client: Client, replicated: bool, work: DurableQueue, metrics: Metrics
) -> Dispatcher | None:
    """This process's bid to turn item changes into webhook deliveries (one process of
    all holds the lease); None when it is off or the server has no change streams."""
    if not settings.webhook_dispatcher:
        return None
    if not replicated:
        log.warning("this MongoDB has no change streams (a standalone server): no webhooks")
        return None
    database = client[settings.mongodb_db]
    await database.command(
        "collMod", Item.get_collection_name(), changeStreamPreAndPostImages={"enabled": True}
    )
    dispatcher = Dispatcher(database, work, settings, metrics)
    dispatcher.start()
    return dispatcher


def app_from_env() -> FastAPI:
    """Uvicorn factory: `uvicorn --factory api.main:app_from_env`."""
    return create_app()

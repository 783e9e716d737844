"""One way to reach the database, for the app and the admin scripts alike."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient

from api.config import Settings
from api.core import embedded
from api.core.supervisor import Supervisor
from documents import DOCUMENT_MODELS

log = logging.getLogger("docstore.database")

Client = AsyncMongoClient[dict[str, Any]]


@asynccontextmanager
async def connect(
    settings: Settings, socket_timeout_ms: int | None = None
) -> AsyncIterator[Client]:
    """A client bound to Beanie (indexes created), on MONGODB_URL or the embedded server.

    `socket_timeout_ms` bounds each wait for a reply: the API sets it so a stalled
    database is a 503, not a hang; admin scripts leave long bulk writes unbounded.
    (Not PyMongo's timeoutMS: with it, an unreachable server is waited for that long
    too, instead of MONGODB_TIMEOUT_MS.) Building indexes at startup can take longer
    than any request should, so that runs on a client of its own without the bound.
    """
    server = None
    supervisor = None
    url = settings.mongodb_url
    if url is None:
        server = await asyncio.to_thread(embedded.start_or_attach, settings.data_dir)
        url = server.url
        log.info("embedded MongoDB at %s, data in %s", url, settings.data_dir)
        if server.owned:  # the process that started it keeps it running
            supervisor = Supervisor(server, settings.data_dir)
            supervisor.start()
    try:
        if socket_timeout_ms is not None:
            indexer = _client(url, settings, None)
            try:
                await _bind(indexer, settings, skip_indexes=False)
            finally:
                await indexer.close()
        client = _client(url, settings, socket_timeout_ms)
        try:
            await _bind(client, settings, skip_indexes=socket_timeout_ms is not None)
            yield client
        finally:
            await client.close()
    finally:
        if supervisor is not None:
            await supervisor.stop()
        if server is not None:
            await asyncio.to_thread(server.stop)


async def has_transactions(client: Client) -> bool:
    """Whether the server runs multi-document transactions: a replica set member or a
    mongos (the embedded server is a one-member replica set), not a standalone."""
    hello = await client.admin.command("hello")
    return "setName" in hello or hello.get("msg") == "isdbgrid"


def _client(url: str, settings: Settings, socket_timeout_ms: int | None) -> Client:
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        socketTimeoutMS=socket_timeout_ms,
        appname="docstore",
    )


async def _bind(client: Client, settings: Settings, skip_indexes: bool) -> None:
    database = client[settings.mongodb_db]
    await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=skip_indexes)

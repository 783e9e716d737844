"""One way to reach the database, for the app and the admin scripts alike."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient

from api import embedded
from api.config import Settings
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
    too, instead of MONGODB_TIMEOUT_MS.)
    """
    server = None
    url = settings.mongodb_url
    if url is None:
        server = await asyncio.to_thread(embedded.start_or_attach, settings.data_dir)
        url = server.url
        log.info("embedded MongoDB at %s, data in %s", url, settings.data_dir)
    try:
        client: Client = AsyncMongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
            connectTimeoutMS=settings.mongodb_timeout_ms,
            socketTimeoutMS=socket_timeout_ms,
            appname="docstore",
        )
        try:
            await init_beanie(database=client[settings.mongodb_db], document_models=DOCUMENT_MODELS)
            yield client
        finally:
            await client.close()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)

"""The app behind a real Uvicorn server on a free loopback port, inside the test's loop."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.core import embedded
from api.server import Server, config


@asynccontextmanager
async def uvicorn_serving(app: FastAPI, **options: Any) -> AsyncIterator[tuple[int, Server]]:
    """`app` (already in its lifespan) served as `python -m api.server` would serve it
    (`options`: `api.server.config`'s); yields the port and the server once it listens."""
    port = embedded.free_port()
    server = Server(
        config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **options)
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
    try:
        yield port, server
    finally:
        server.should_exit = True
        await task

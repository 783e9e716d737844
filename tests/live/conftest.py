"""The live feed's fixtures: each test's own app, served by Uvicorn on a free port, and
helpers to read its sockets."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.config import Settings
from api.main import create_app
from api.server import Server
from tests.conftest import Account, drop_database, make_settings
from tests.serving import uvicorn_serving

WS_PATH = "/api/v1/ws/items"


@dataclass
class Served:
    url: str  # ws://host:port
    server: Server

    def ws(self, account: Account | None = None, **params: Any) -> str:
        if account is not None:
            params["token"] = account.token
        query = httpx2.QueryParams(params)
        return f"{self.url}{WS_PATH}" + (f"?{query}" if params else "")


@pytest.fixture
def settings(mongodb_url: str, tmp_path: Path) -> Settings:
    return make_settings(mongodb_url, tmp_path, live_feed=True)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app of each test's own, not the module's: a shared feed could still be
    delivering the deletes that emptied the database to the next test's subscribers."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app
    await drop_database(settings)


@asynccontextmanager
async def serving(app: FastAPI, ping_interval: float = 20.0) -> AsyncIterator[Served]:
    """`app` (already in its lifespan) behind a real Uvicorn server on a free port."""
    async with uvicorn_serving(app, ping_interval=ping_interval) as (port, server):
        yield Served(f"ws://127.0.0.1:{port}", server)


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[Served]:
    async with serving(app) as served:
        yield served


@asynccontextmanager
async def subscribe(url: str, **options: Any) -> AsyncIterator[ClientConnection]:
    """A socket, once the server says it listens: what is written after this arrives."""
    async with connect(url, **options) as ws:
        subscribed = await next_event(ws)
        assert set(subscribed) == {"event", "cursor"}
        assert subscribed["event"] == "subscribed"
        yield ws


async def next_event(ws: ClientConnection, within_s: float = 5) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within_s))
    return message


async def close_of(ws: ClientConnection, within_s: float = 10) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    async with asyncio.timeout(within_s):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            frame = closed.rcvd
    assert frame is not None, "closed without a close frame"
    return frame.code, frame.reason

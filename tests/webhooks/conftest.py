"""Webhook tests' parts: a real HTTP receiver on a loopback port that records what it
gets and answers as a test asks, and an app that dispatches and delivers to it."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from fastapi import FastAPI
from standardwebhooks import Webhook as Verifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.core import embedded
from tests.conftest import Account, app_with, eventually, make_settings

Answer = Callable[[Request], Awaitable[Response]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def verified(self, secret: str) -> dict[str, Any]:
        """The payload, once the reference library has verified its signature."""
        checked: dict[str, Any] = Verifier(secret).verify(self.body, self.headers)
        return checked


@dataclass
class Receiver:
    port: int
    seen: list[Received] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)  # by path; default 204

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [got for got in self.seen if got.path == path]

    async def record(self, request: Request) -> Response:
        got = Received(request.url.path, dict(request.headers), await request.body())
        self.seen.append(got)
        answer = self.answers.get(got.path)
        return await answer(request) if answer else Response(status_code=204)

    async def arrived(self, path: str, count: int, within_s: float = 15) -> list[Received]:
        async def enough() -> bool:
            return len(self.at(path)) >= count

        try:
            await eventually(enough, within_s)
        except TimeoutError:
            got = [(r.path, r.payload.get("type")) for r in self.seen]
            raise AssertionError(f"{count} deliveries to {path} did not arrive: {got}") from None
        return self.at(path)


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    port = embedded.free_port()
    receiver = Receiver(port)
    app = Starlette(routes=[Route("/{path:path}", receiver.record, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the receiver did not start"
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as started:
        yield started


def hook_settings(mongodb_url: str, data_dir: Path, **overrides: object) -> Any:
    """An app that dispatches changes and delivers webhooks quickly, to loopback."""
    values: dict[str, object] = {
        "outbox_worker": True,
        "outbox_poll_s": 0.05,
        "webhook_dispatcher": True,
        "webhook_allowed_networks": ["127.0.0.0/8"],
        "webhook_backoff_s": 0.05,
        "webhook_timeout_s": 2.0,
        **overrides,
    }
    return make_settings(mongodb_url, data_dir, **values)


@asynccontextmanager
async def hooks_app(
    mongodb_url: str, data_dir: Path, **overrides: object
) -> AsyncIterator[tuple[FastAPI, httpx2.AsyncClient]]:
    async with app_with(hook_settings(mongodb_url, data_dir, **overrides)) as running:
        yield running


async def make_webhook(
    client: httpx2.AsyncClient, owner: Account, url: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/webhooks", json={"url": url, **fields}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def deliveries(
    client: httpx2.AsyncClient, owner: Account, hook_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/webhooks/{hook_id}/deliveries?limit=100", headers=owner.headers
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


async def newest_delivery_when(
    client: httpx2.AsyncClient, owner: Account, hook_id: str, status: str
) -> dict[str, Any]:
    """The webhook's newest delivery, once it has `status`."""

    async def reached() -> bool:
        log = await deliveries(client, owner, hook_id)
        return bool(log) and log[0]["status"] == status

    await eventually(reached)
    return (await deliveries(client, owner, hook_id))[0]


async def when_disabled(client: httpx2.AsyncClient, owner: Account, hook_id: str) -> str:
    """Why the webhook was disabled, once it is."""
    url = f"/api/v1/webhooks/{hook_id}"

    async def disabled() -> bool:
        return (await client.get(url, headers=owner.headers)).json()["enabled"] is False

    await eventually(disabled)
    reason: str = (await client.get(url, headers=owner.headers)).json()["disabled_reason"]
    return reason

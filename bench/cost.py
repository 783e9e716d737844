"""Where a by-id read's CPU goes (scripts/bench --cost N): the app and the floor called
in this process, no network, no background tasks, so what differs is their own work.

Four ways to answer the same `GET /items/{id}` with a JWT, in interleaved rounds of N
requests each, CPU per request of this process (medians):

- the floor, as Uvicorn calls it (Starlette's routing, the endpoint, plain JSON);
- the floor validating what it reads as the app does: the stored user and item as
  the app's Beanie documents (a stored document another tool mangled must be a 409
  or a 401, never a 500);
- the app's endpoint alone: login, scopes, access policy, `read_item`;
- the whole app, as Uvicorn calls it: its middleware (request id, security
  headers, access log, metrics, body limits) and FastAPI's own layers too.

The database reads cost every row the same; the ratios say what each layer costs.
"""

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bson import ObjectId
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message

from bench import floor as raw
from bench.harness import DB, SECRET, Setup

Call = Callable[[], Awaitable[Any]]


def report(setup: Setup, requests: int, rounds: int) -> None:
    # The app built here runs no background task: the live feed, the webhook dispatcher
    # and the outbox worker cost CPU whether or not anyone reads.
    os.environ.update(
        MONGODB_URL=setup.mongodb_url, MONGODB_DB=DB, SECRET_KEY=SECRET, LOG_LEVEL="WARNING",
        LIVE_FEED="false", WEBHOOK_DISPATCHER="false", OUTBOX_WORKER="false",
        MONGODB_SOCKET_TIMEOUT_MS=setup.env["MONGODB_SOCKET_TIMEOUT_MS"],
    )  # fmt: skip
    medians = _run(_measure(setup, requests, rounds))
    floor = medians["the floor"]
    print(f"\nGET /items/{{id}} with a JWT, {rounds} rounds x {requests} requests, in process\n")
    print(f"{'':<44}{'CPU µs/request':>15}{'floor/this':>12}")
    for label, micros in medians.items():
        print(f"{label:<44}{micros:>15.0f}{floor / micros:>12.2f}")


async def _measure(setup: Setup, requests: int, rounds: int) -> dict[str, float]:
    from api.items import read_route  # after the environment is set
    from api.main import create_app

    app, floor_app = create_app(), raw.create_app()
    path = f"/api/v1/items/{setup.first_item}"
    async with app.router.lifespan_context(app), floor_app.router.lifespan_context(floor_app):
        floor = _floor_of(floor_app)
        route = app.router.routes[0]
        assert isinstance(route, read_route.ReadItemRoute)

        def request(target: ASGIApp) -> Request:
            scope = _scope(path, setup.token)
            scope |= {"app": target, "path_params": {"item_id": setup.first_item}}
            return Request(scope, _receive)

        calls: dict[str, Call] = {
            "the floor": lambda: _asgi(floor_app, path, setup.token),
            "the floor, validating as the app does": lambda: _validating(floor, request(floor_app)),
            "the app's endpoint (no middleware)": lambda: _routed(route, app, path, setup.token),
            "the app (middleware, FastAPI's layers)": lambda: _asgi(app, path, setup.token),
        }
        for call in calls.values():  # warm, and each answers 200
            for _ in range(200):
                status = _status(await call())
            assert status == 200, status
        spent: dict[str, list[float]] = {label: [] for label in calls}
        for _ in range(rounds):
            for label, call in calls.items():
                started = time.process_time()
                for _ in range(requests):
                    await call()
                spent[label].append((time.process_time() - started) / requests * 1e6)
    return {label: statistics.median(values) for label, values in spent.items()}


def _run(measuring: Awaitable[dict[str, float]]) -> dict[str, float]:
    """On uvloop when it is installed, as Uvicorn runs both."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(measuring)  # type: ignore[arg-type]
    return uvloop.run(measuring)  # type: ignore[arg-type]


def _floor_of(floor_app: Any) -> raw.Floor:
    """The floor's endpoints, as its one route holds them."""
    endpoint = floor_app.router.routes[0].endpoint
    floor: raw.Floor = endpoint.__self__
    return floor


async def _validating(floor: raw.Floor, request: Request) -> JSONResponse:
    from api.items import policy
    from api.items.deps import shown
    from documents import User

    stored_user = await floor._caller(request)
    assert stored_user is not None
    user = User.model_validate(stored_user)
    item = await floor.db.items.find_one({"_id": ObjectId(request.path_params["item_id"])})
    assert item is not None
    shown(item, policy.access(user, item))  # type: ignore[arg-type]
    return JSONResponse(raw._plain(item))


class _Sink:
    status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def _routed(route: Any, app: ASGIApp, path: str, token: str) -> _Sink:
    """The route in front of the router (`api/items/read_route.py`), as the router
    hands it a request it matched."""
    sink, scope = _Sink(), _scope(path, token)
    _, child = route.matches(scope)
    await route.handle(scope | child | {"app": app}, _receive, sink)
    return sink


async def _asgi(target: ASGIApp, path: str, token: str) -> _Sink:
    sink = _Sink()
    await target(_scope(path, token), _receive, sink)
    return sink


def _status(answer: Any) -> int:
    return answer.status if isinstance(answer, _Sink) else answer.status_code


def _scope(path: str, token: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
    }  # fmt: skip


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}

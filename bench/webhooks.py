"""Webhook deliveries (scripts/bench --webhooks N): N item changes through the API with
one webhook to a receiver on a loopback port, against a floor.

First N creates before any webhook exists (what the writes cost alone), then two
phases, each N changes (item creates in batches through the API):
- burst: written as fast as the API takes them; prints the time from the first write
  to the last delivery and deliveries per second. The floor is a loop that signs and
  POSTs the same payloads, one after another, with the same HTTP client the app uses
  (api/webhooks/transport.py): what delivering costs without the change stream, the
  queue and the database. Ratio: app deliveries/s over the floor's.
- paced: written at `--rate` changes per second (default 100); prints the lag from
  each change's commit (its item's `updated_at`, stamped by the app) to its receipt,
  p50 and p99.

The app runs as its own API process on a database of its own, with
WEBHOOK_ALLOWED_NETWORKS letting it reach loopback. The receiver runs in this process.
"""

import asyncio
import json
import statistics
import time
from datetime import datetime
from typing import Any

import httpx2
import uvicorn
from pymongo import MongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.core import embedded
from api.webhooks import signing
from api.webhooks.addresses import allowed_networks
from api.webhooks.transport import Transport
from bench.harness import Setup, serve

DB = "bench_webhooks"
BATCH = 100  # creates per batch in the burst
PASSWORD = "Correct-horse-41"


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, tuple[float, bytes]] = {}  # webhook-id -> first arrival

    async def record(self, request: Request) -> Response:
        body = await request.body()
        self.arrivals.setdefault(request.headers["webhook-id"], (time.time(), body))
        return Response(status_code=204)


def report(setup: Setup, count: int, rate: float) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(setup.mongodb_url)
    with client:
        client.drop_database(DB)
    env = {
        **setup.env,
        "MONGODB_DB": DB,
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "OUTBOX_POLL_S": "0.2",
    }
    process, base = serve(["api.server"], env)
    try:
        asyncio.run(_report(base, count, rate))
        with MongoClient(setup.mongodb_url) as client:
            _stages(client[DB])
    finally:
        process.terminate()
        process.wait()
        with MongoClient(setup.mongodb_url) as client:
            client.drop_database(DB)


async def _report(base: str, count: int, rate: float) -> None:
    receiver = Receiver()
    port = embedded.free_port()
    app = Starlette(routes=[Route("/hook", receiver.record, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        async with httpx2.AsyncClient(base_url=base, timeout=120) as api:
            api.headers["Authorization"] = f"Bearer {await _signed_in(api)}"
            plain = await _writes(api, count, "plain")  # no webhook yet: the writes' own cost
            made = await api.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/hook"})
            assert made.status_code == 201, made.text
            secret = made.json()["secret"]
            written, burst = await _burst(api, receiver, count)
            bodies = [body for _, body in list(receiver.arrivals.values())[-count:]]
            floor = await _floor(port, secret, bodies)
            receiver.arrivals.clear()
            lags = await _paced(api, receiver, count, rate)
    finally:
        server.should_exit = True
        await serving
    app_rate, floor_rate = count / burst, count / floor
    print(f"\nwebhooks: {count} changes, one webhook, a loopback receiver\n")
    print(
        f"{'the same writes, before the webhook exists':<44}{plain:>8.2f} s{count / plain:>9.0f}/s"
    )
    print(
        f"{'burst: the writes alone (API answers)':<44}{written:>8.2f} s{count / written:>9.0f}/s"
    )
    print(f"{'burst: first write to last delivery':<44}{burst:>8.2f} s{app_rate:>9.0f}/s")
    print(f"{'floor: sign and POST the same payloads':<44}{floor:>8.2f} s{floor_rate:>9.0f}/s")
    print(f"{'app / floor':<44}{app_rate / floor_rate:>10.2f}x")
    p50 = statistics.median(lags)
    p99 = statistics.quantiles(lags, n=100)[98] if len(lags) >= 2 else lags[0]
    print(f"{f'lag at {rate:g} changes/s, commit to receipt':<44}p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms")  # fmt: skip


def _stages(database: Any) -> None:
    """Where the time went, per phase, from what the database recorded: commit (the
    item's `updated_at`) to queued (the delivery's `created_at`, stored by the
    dispatcher) to recorded as delivered (`sent_at`)."""
    committed = {
        item["_id"]: (item["title"].split()[0], item["updated_at"])
        for item in database.items.find({}, {"title": 1, "updated_at": 1})
    }
    stages: dict[str, tuple[list[float], list[float]]] = {}
    for entry in database.outbox.find({"channel": "webhook", "item_id": {"$ne": None}}):
        phase, commit = committed[entry["item_id"]]
        queued, sent = stages.setdefault(phase, ([], []))
        queued.append((entry["created_at"] - commit).total_seconds())
        sent.append((entry["sent_at"] - entry["created_at"]).total_seconds())
    print()
    for phase, (queued, sent) in stages.items():
        for name, lags in (("commit to queued", queued), ("queued to delivered", sent)):
            p50, p99 = statistics.median(lags), statistics.quantiles(lags, n=100)[98]
            print(f"{f'{phase}: {name}':<44}p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


async def _signed_in(api: httpx2.AsyncClient) -> str:
    user = {"email": "hooks@example.com", "username": "hooks", "password": PASSWORD}
    made = await api.post("/api/v1/users", json=user)
    assert made.status_code == 201, made.text
    form = {"username": "hooks", "password": PASSWORD}
    token: str = (await api.post("/api/v1/auth/login", data=form)).json()["access_token"]
    return token


async def _create(api: httpx2.AsyncClient, titles: list[str]) -> None:
    operations = [{"op": "create", "item": {"title": title}} for title in titles]
    response = await api.post("/api/v1/items/batch", json={"operations": operations})
    assert response.status_code == 200, response.text


async def _until_delivered(receiver: Receiver, count: int, within_s: float = 600) -> None:
    deadline = time.monotonic() + within_s
    while len(receiver.arrivals) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(receiver.arrivals)} of {count} deliveries arrived")
        await asyncio.sleep(0.005)


async def _writes(api: httpx2.AsyncClient, count: int, prefix: str) -> float:
    """Seconds to create `count` items in batches through the API."""
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        await _create(api, [f"{prefix} {n}" for n in range(first, min(first + BATCH, count))])
    return time.perf_counter() - started


async def _burst(api: httpx2.AsyncClient, receiver: Receiver, count: int) -> tuple[float, float]:
    """Seconds from the first write to the last write's answer, and to the last delivery."""
    started = time.perf_counter()
    written = await _writes(api, count, "burst")
    await _until_delivered(receiver, count)
    return written, time.perf_counter() - started


async def _floor(port: int, secret: str, bodies: list[bytes]) -> float:
    transport = Transport(10.0, allowed_networks("127.0.0.0/8"))
    url = f"http://127.0.0.1:{port}/hook"
    try:
        started = time.perf_counter()
        for n, body in enumerate(bodies):
            headers = signing.headers([secret], f"msg_floor{n}", int(time.time()), body)
            outcome = await transport.post(url, body, headers)
            assert outcome.delivered, outcome
        return time.perf_counter() - started
    finally:
        await transport.close()


async def _paced(
    api: httpx2.AsyncClient, receiver: Receiver, count: int, rate: float
) -> list[float]:
    per_batch = max(1, round(rate / 10))  # ten batches a second
    interval = per_batch / rate
    started = time.perf_counter()
    for sent in range(0, count, per_batch):
        await _create(api, [f"paced {n}" for n in range(sent, min(sent + per_batch, count))])
        wait = started + (sent + per_batch) * interval / per_batch * 1 - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
    await _until_delivered(receiver, count)
    lags = []
    for arrived, body in receiver.arrivals.values():
        item = json.loads(body)["data"]["item"]
        committed = datetime.fromisoformat(item["updated_at"].replace("Z", "+00:00"))
        lags.append(arrived - committed.timestamp())
    return lags

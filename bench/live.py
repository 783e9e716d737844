"""Live feed check (scripts/bench --live N): N WebSocket subscribers, each a different
user with whom one busy item is shared, and its owner patching it steadily.

Prints the app's RSS before and after connecting the subscribers (KB per idle
subscriber), and the delivery latency of each event, from the item's `updated_at`
(stamped by the app just before its update commits) to its receipt by a subscriber,
p50/p99 over every (event, subscriber) pair. The floor is one raw PyMongo change
stream in this process reading the same writes: what the database itself costs.
The subscribers run in this process too, so their own work is part of the figure.
"Added by the app" is each subscriber's receipt less the floor's receipt of the same
write: the feed's own cost, without the database's write and change stream.
"""

import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx2
from bson import ObjectId
from pymongo import AsyncMongoClient, MongoClient
from websockets.asyncio.client import ClientConnection, connect

from bench.harness import DB, Setup, seed_users


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")  # pragma: no cover


def report(setup: Setup, subscribers: int, rate: float, seconds: float) -> None:
    asyncio.run(_report(setup, subscribers, rate, seconds))


async def _report(setup: Setup, subscribers: int, rate: float, seconds: float) -> None:
    base, pid = setup.targets["app"], setup.pids["app"]
    tokens, item_id = _busy_item(setup, subscribers)
    ws_url = base.replace("http", "ws") + "/api/v1/ws/items?token={token}"
    before = rss_kb(pid)
    sockets: list[ClientConnection] = []
    for start in range(0, subscribers, 50):  # connect in waves, as clients would
        wave = tokens[start : start + 50]
        sockets += await asyncio.gather(*(_subscribe(ws_url.format(token=t)) for t in wave))
    await asyncio.sleep(2)
    after = rss_kb(pid)
    per = (after - before) / subscribers
    print(f"RSS: {before / 1024:.1f} MiB idle, {after / 1024:.1f} MiB with {subscribers}")
    print(f"     {per:.1f} KB per idle subscriber (target < 60)")

    total = int(rate * seconds)
    app_latencies: list[float] = []
    floor_latencies: list[float] = []
    received: list[tuple[int, float]] = []  # (write number, receipt) per subscriber event
    floor_received: dict[int, float] = {}
    readers = [asyncio.create_task(_read(ws, total, app_latencies, received)) for ws in sockets]
    floor = asyncio.create_task(_floor(setup.mongodb_url, total, floor_latencies, floor_received))
    await asyncio.sleep(0.5)  # the floor's stream is open
    took = await _write(base, setup.token, item_id, total, rate)
    await asyncio.wait([*readers, floor], timeout=30)
    for ws in sockets:
        await ws.close()
    delivered = len(app_latencies)
    print(
        f"writes: {total} at {rate:g}/s asked, {total / took:.1f}/s done (one at a time); "
        f"events delivered: {delivered} of {total * subscribers}"
    )
    for label, values in (("app", app_latencies), ("floor", floor_latencies)):
        if values:
            p50, p99 = _percentile(values, 50), _percentile(values, 99)
            print(f"{label:>5}: latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if app_latencies and floor_latencies:
        app99, floor99 = _percentile(app_latencies, 99), _percentile(floor_latencies, 99)
        print(f"app/floor p99: {app99 / floor99:.2f} (target app p99 < 250 ms)")
    added = [(at - floor_received[n]) * 1000 for n, at in received if n in floor_received]
    if added:
        p50, p99 = _percentile(added, 50), _percentile(added, 99)
        print(f"added by the app (after the floor's stream): p50 {p50:.1f} ms, p99 {p99:.1f} ms")


async def _subscribe(url: str) -> ClientConnection:
    """A socket once the server listens for it (its first message says so)."""
    ws = await connect(url, ping_interval=None)
    first = json.loads(await ws.recv())
    assert first["event"] == "subscribed", first
    return ws


def _busy_item(setup: Setup, subscribers: int) -> tuple[list[str], str]:
    """`subscribers` users (a JWT each) and one item of the bench user's shared with all
    of them, written raw: the bench measures the feed, not SHARES_MAX_PER_ITEM."""
    tokens, sharees = seed_users(setup.mongodb_url, subscribers)
    now = datetime.now(UTC).replace(microsecond=0)
    item = {
        "_id": ObjectId(),
        "owner_id": setup.user_id,
        "title": "busy",
        "description": None,
        "tags": [],
        "data": {"n": 0},
        "search_terms": [],
        "created_at": now,
        "updated_at": now,
        "version": 1,
        "readers": [setup.user_id, *sharees],
        "shares": [
            {"user_id": sharee, "role": "viewer", "created_at": now, "updated_at": now}
            for sharee in sharees
        ],
    }
    client: MongoClient[dict[str, Any]] = MongoClient(setup.mongodb_url)
    with client:
        client[DB].items.insert_one(item)
    return tokens, str(item["_id"])


async def _write(base: str, token: str, item_id: str, total: int, rate: float) -> float:
    """PATCH the item `total` times, at most `rate` a second; the seconds it took."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=base, headers=headers) as client:
        started = time.monotonic()
        for n in range(total):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            patch = {"data": {"n": n + 1}}
            response = await client.patch(f"/api/v1/items/{item_id}", json=patch)
            response.raise_for_status()
        return time.monotonic() - started


def _latency_ms(item: dict[str, Any]) -> float:
    updated = datetime.fromisoformat(item["updated_at"])
    return (time.time() - updated.timestamp()) * 1000


async def _read(
    ws: ClientConnection, total: int, latencies: list[float], received: list[tuple[int, float]]
) -> None:
    for _ in range(total):
        event = json.loads(await ws.recv())
        at = time.time()
        assert event["item"]["access"] == "viewer", event
        latencies.append(_latency_ms(event["item"]))
        received.append((event["item"]["data"]["n"], at))


async def _floor(url: str, total: int, latencies: list[float], received: dict[int, float]) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    async with client:
        pipeline = [{"$match": {"operationType": "update"}}]
        async with await client[DB].items.watch(pipeline) as stream:
            for _ in range(total):
                change = await stream.next()
                at = time.time()
                fields = change["updateDescription"]["updatedFields"]
                latencies.append((at - fields["updated_at"].timestamp()) * 1000)
                written = fields.get("data.n", fields.get("data", {}).get("n"))
                if isinstance(written, int):
                    received[written] = at


def _percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100)[pct - 1] if len(values) > 1 else values[0]

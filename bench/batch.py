"""Batch writes (scripts/bench --batch N): N creates in one POST /items/batch against N
single POST /items, one after another and 16 at a time, and a raw floor: PyMongo's
insert_many of the same N documents and their first versions in one transaction (what
a batch does below the API). Interleaved rounds; prints the median of each and the ratios.
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx2
from bson import ObjectId
from pymongo import AsyncMongoClient, ReplaceOne

from bench.harness import DB, Setup
from documents.search import search_terms

CONCURRENCY = 16


def report(setup: Setup, count: int, rounds: int) -> None:
    asyncio.run(_report(setup, count, rounds))


async def _report(setup: Setup, count: int, rounds: int) -> None:
    auth = {"Authorization": f"Bearer {setup.token}"}
    timings: dict[str, list[float]] = {}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(setup.mongodb_url, tz_aware=True)
    async with (
        httpx2.AsyncClient(base_url=setup.targets["app"], headers=auth, timeout=120) as api,
        client,
    ):
        ways: dict[str, Callable[[], Awaitable[None]]] = {
            f"{count} single POSTs, one at a time": partial(_singles, api, count, 1),
            f"{count} single POSTs, {CONCURRENCY} at a time": partial(
                _singles, api, count, CONCURRENCY
            ),
            f"one batch of {count} creates": partial(_batch, api, count),
            f"floor: insert_many({count}) + history, one txn": partial(
                _floor, client, setup, count
            ),
        }
        await _batch(api, count)  # warmed up: the first transaction opens sessions
        for _ in range(rounds):
            for name, way in ways.items():
                started = time.perf_counter()
                await way()
                timings.setdefault(name, []).append(time.perf_counter() - started)
    print(f"\n{rounds} rounds, {count} items each (median; items/s; vs one batch)\n")
    batch = statistics.median(timings[f"one batch of {count} creates"])
    for name, runs in timings.items():
        took = statistics.median(runs)
        print(f"{name:<46}{took * 1000:>9.1f} ms{count / took:>9.0f}/s{took / batch:>8.2f}x")


async def _singles(api: httpx2.AsyncClient, count: int, at_once: int) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(n: int) -> None:
        async with gate:
            response = await api.post("/api/v1/items", json={"title": f"single {n}"})
            assert response.status_code == 201, response.text

    await asyncio.gather(*(one(n) for n in range(count)))


async def _batch(api: httpx2.AsyncClient, count: int) -> None:
    operations = [{"op": "create", "item": {"title": f"batched {n}"}} for n in range(count)]
    response = await api.post("/api/v1/items/batch", json={"operations": operations})
    assert response.status_code == 200, response.text


async def _floor(client: AsyncMongoClient[dict[str, Any]], setup: Setup, count: int) -> None:
    now = datetime.now(UTC)
    docs = [_doc(setup, n, now) for n in range(count)]
    versions = [ReplaceOne({"_id": f"{doc['_id']}:1"}, _version(doc), upsert=True) for doc in docs]
    async with client.start_session() as session, await session.start_transaction():
        await client[DB].items.insert_many(docs, session=session)
        await client[DB].versions.bulk_write(versions, session=session)


def _version(doc: dict[str, Any]) -> dict[str, Any]:
    """What the app keeps of a new item in its history: its content, when and by whom."""
    kept = {k: doc[k] for k in ("owner_id", "title", "description", "tags", "data", "created_at")}
    return kept | {
        "item_id": doc["_id"], "version": 1, "changed_at": doc["updated_at"],
        "changed_by": doc["owner_id"], "change": "created",
    }  # fmt: skip


def _doc(setup: Setup, n: int, now: datetime) -> dict[str, Any]:
    title = f"floor {n}"
    return {
        "_id": ObjectId(), "owner_id": setup.user_id, "title": title, "description": None,
        "tags": [], "data": {}, "search_terms": search_terms(title, None, []),
        "created_at": now, "updated_at": now, "version": 1,
    }  # fmt: skip

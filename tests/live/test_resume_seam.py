"""Resuming inside a transaction: every event of one batch shares one cluster time, yet a
resume from the middle of it sends the rest exactly once, in order, whatever the
subscriber's queue repeats (a watcher that runs behind offers the whole batch again)."""

import asyncio

import httpx2
from fastapi import FastAPI

from api.items import policy
from api.live.feed import Change, Position
from tests.conftest import Account, feed_of, services_of
from tests.live.conftest import Served, next_event, subscribe

BATCH = "/api/v1/items/batch"


async def test_a_resume_from_inside_a_batch_sends_the_rest_once_in_order(
    served: Served, app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    feed = feed_of(app)
    assert feed is not None
    # A subscriber whose queue holds the whole batch, as one fed by a lagging watcher is.
    behind = feed.subscribe(None, alice.user.id, policy.readable(alice.user), (), None)
    try:
        async with subscribe(served.ws(alice)) as ws:
            creates = [{"op": "create", "item": {"title": f"b{n}"}} for n in range(4)]
            made = await client.post(BATCH, json={"operations": creates}, headers=alice.headers)
            assert made.status_code == 200
            events = [await next_event(ws) for _ in range(4)]
        ids = [result["item"]["id"] for result in made.json()["results"]]
        assert [event["item"]["id"] for event in events] == ids
        assert behind.queue.qsize() == 4
        times = {change.position.time for change in list(behind.queue._queue)}  # type: ignore[attr-defined]
        assert len(times) == 1  # one transaction, one cluster time

        cursor = services_of(app).feed_cursors.decode(events[1]["cursor"])
        resumed = feed.changes(behind, Position.decode(cursor), replay_max=100)
        sent: list[Change] = []

        async def read() -> None:
            async for change in resumed:
                sent.append(change)

        reading = asyncio.create_task(read())
        await asyncio.sleep(0.5)
        later = await client.post("/api/v1/items", json={"title": "later"}, headers=alice.headers)
        await asyncio.sleep(0.5)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    finally:
        feed.unsubscribe(behind)
    assert [str(change.item_id) for change in sent] == [*ids[2:], later.json()["id"]]

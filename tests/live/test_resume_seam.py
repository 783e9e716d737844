"""Resuming: from inside a transaction, every event of one batch shares one cluster time, yet a
resume from the middle of it sends the rest exactly once, in order, whatever the
subscriber's queue repeats (a watcher that runs behind offers the whole batch again);
and an account may have only a few replays running at once."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest
from bson import ObjectId
from bson.timestamp import Timestamp
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.items import policy
from api.live.feed import Change, LiveFeed, Position
from tests.conftest import Account, create_item, eventually, feed_of, services_of
from tests.live.conftest import Served, close_of, next_event, subscribe

BATCH = "/api/v1/items/batch"


async def has(sent: list[Change], count: int) -> bool:
    return len(sent) >= count


def turns_given_back(feed: LiveFeed) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not feed.replays

    return check


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
        times = {seen.change.position.time for seen in list(behind.queue._queue)}  # type: ignore[attr-defined]
        assert len(times) == 1  # one transaction, one cluster time

        cursor = services_of(app).feed_cursors.decode(events[1]["cursor"])
        resumed = feed.changes(behind, Position.decode(cursor), replay_max=100)
        sent: list[Change] = []

        async def read() -> None:
            async for seen in resumed:
                sent.append(seen.change)

        reading = asyncio.create_task(read())
        await eventually(lambda: has(sent, 2))  # the rest of the batch, replayed
        later = await client.post("/api/v1/items", json={"title": "later"}, headers=alice.headers)
        await eventually(lambda: has(sent, 3))
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    finally:
        feed.unsubscribe(behind)
    assert [str(change.item_id) for change in sent] == [*ids[2:], later.json()["id"]]


async def test_an_account_replays_only_a_few_resumes_at_once(
    served: Served, app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """A replay reads every account's changes since its cursor: one account may have
    LIVE_REPLAYS_PER_USER (2) running per process; one more is told to come back."""
    feed = feed_of(app)
    assert feed is not None
    async with subscribe(served.ws(alice)) as ws:
        await create_item(client, alice, title="seen")
        cursor = (await next_event(ws))["cursor"]
    await create_item(client, alice, title="missed")
    running = [feed.replay_slot(alice.user.id, 2) for _ in range(2)]  # two replays running
    async with connect(served.ws(alice, resume_after=cursor)) as refused:
        assert await close_of(refused) == (
            1013,
            "too many resumes at once for this account; reconnect shortly",
        )
    running[0].release()  # one of them is done: a turn is free again
    async with subscribe(served.ws(alice, resume_after=cursor)) as resumed:
        assert (await next_event(resumed))["item"]["title"] == "missed"
    running[1].release()
    await eventually(turns_given_back(feed))  # the sockets' too, once their handlers end


async def test_a_burst_of_resumes_gets_two_replays_at_a_time(
    served: Served, app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    feed = feed_of(app)
    assert feed is not None
    async with subscribe(served.ws(alice)) as ws:
        await create_item(client, alice, title="seen")
        cursor = (await next_event(ws))["cursor"]
    creates = [{"op": "create", "item": {"title": f"m{n}"}} for n in range(100)]
    made = await client.post(BATCH, json={"operations": creates}, headers=alice.headers)
    assert made.status_code == 200
    most = 0

    async def resume() -> str:
        nonlocal most
        async with connect(served.ws(alice, resume_after=cursor)) as ws:
            first = json.loads(await ws.recv())
            if first["event"] != "subscribed":
                return "?"
            most = max(most, sum(feed.replays.values()))
            for _ in range(100):
                await next_event(ws)
            return "replayed"
        return "?"  # pragma: no cover

    async def attempt() -> str:
        try:
            return await resume()
        except ConnectionClosed as closed:
            return f"{closed.rcvd.code if closed.rcvd else None}"

    outcomes = await asyncio.gather(*(attempt() for _ in range(20)))
    assert set(outcomes) == {"replayed", "1013"}
    assert most <= 2
    await eventually(turns_given_back(feed))


async def test_a_commit_seen_after_the_replay_comes_even_with_an_earlier_time(
    app: FastAPI, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded server can stamp a transaction's time, let a plain write take a
    later time and an earlier place in the stream, and only then publish the
    transaction. A replay that read the plain write and ended before the transaction
    showed must not make the queue drop it for its earlier time."""
    feed = feed_of(app)
    assert feed is not None
    owner = alice.user.id

    def change(token: str, seconds: int) -> Change:
        position = Position(token, Timestamp(seconds, 1))
        acl = policy.Acl(owner)
        return Change("created", ObjectId(), None, acl, frozenset(), frozenset(), {}, position)

    resume_point, plain_write, transaction = change("r", 4), change("p", 6), change("t", 5)

    async def replay(start: Position, limit: int) -> AsyncIterator[Change]:
        yield plain_write

    monkeypatch.setattr(feed, "_replay", replay)
    subscriber = feed.subscribe(None, owner, policy.readable(alice.user), (), None)
    try:
        for queued in (change("before", 3), resume_point, plain_write, transaction):
            seen = subscriber.sees(queued)
            assert seen is not None
            subscriber.queue.put_nowait(seen)
        changes = feed.changes(subscriber, resume_point.position, replay_max=100)
        sent = [(await asyncio.wait_for(anext(changes), 2)).change for _ in range(2)]
        await changes.aclose()
    finally:
        feed.unsubscribe(subscriber)
    assert sent == [plain_write, transaction]  # once each, nothing from before the resume

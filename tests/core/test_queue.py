"""The durable queue with a channel of its own (not email): what every channel gets from
it, claim, retry with backoff, dead after the last attempt, manual retry, sealed
secrets, counts by channel, against the real database."""

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from api.core import queue
from api.core.queue import DurableQueue, Entry, Sealer
from documents import Delivery
from documents.base import utcnow
from tests.conftest import TEST_SECRET, app_with, eventually, make_settings, services_of


class Ping(BaseModel):
    message_id: str
    destination: str
    body: str


class Flaky:
    """Fails its first `failures` deliveries, then records what it delivered."""

    name = "ping"
    max_attempts, backoff_s = 5, 0.001

    def __init__(self, failures: int) -> None:
        self.failures, self.delivered_bodies = failures, list[tuple[str, str | None]]()
        self.given_up = list[str]()

    def binding(self, entry: Mapping[str, Any]) -> str:
        return f"{entry['message_id']}\n{entry['destination']}"

    async def deliver(self, entry: Mapping[str, Any], secret: str | None) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the other end is down")
        self.delivered_bodies.append((entry["body"], secret))

    async def gave_up(self, entry: Mapping[str, Any], error: Exception) -> None:
        self.given_up.append(entry["message_id"])

    def delivered(self, entry: Mapping[str, Any]) -> Entry:
        return {"body": ""}

    def describe(self, entry: Mapping[str, Any]) -> str:
        return str(entry["message_id"])


def a_queue(app: FastAPI, channel: Flaky, max_attempts: int = 5) -> DurableQueue:
    channel.max_attempts = max_attempts
    return DurableQueue(services_of(app).settings, [channel], Sealer(TEST_SECRET))


async def deliver_until_settled(work: DurableQueue, message_id: str) -> dict[str, Any]:
    async def settled() -> bool:
        await work.deliver_one()
        entry = await queue.collection().find_one({"message_id": message_id})
        return entry is not None and entry["status"] in (Delivery.sent, Delivery.dead)

    await eventually(settled)
    found = await queue.collection().find_one({"message_id": message_id})
    assert found is not None
    return found


async def test_a_failing_delivery_is_retried_until_it_goes_through(app: FastAPI) -> None:
    channel = Flaky(failures=2)
    work = a_queue(app, channel)
    await work.enqueue("ping", Ping(message_id="<1>", destination="a", body="hi"), secret="s3")
    stored = await queue.collection().find_one({"message_id": "<1>"})
    assert stored is not None
    assert "s3" not in str(stored)  # the secret rests sealed
    entry = await deliver_until_settled(work, "<1>")
    assert (entry["status"], entry["attempts"], entry["body"]) == (Delivery.sent, 3, "")
    assert entry["secret"] is None
    assert channel.delivered_bodies == [("hi", "s3")]
    assert entry["purge_at"] is not None  # the TTL index removes it in time


async def test_after_the_last_attempt_it_is_dead_until_retried(app: FastAPI) -> None:
    channel = Flaky(failures=3)
    work = a_queue(app, channel, max_attempts=2)
    await work.enqueue("ping", Ping(message_id="<2>", destination="a", body="hi"))
    entry = await deliver_until_settled(work, "<2>")
    assert (entry["status"], entry["attempts"]) == (Delivery.dead, 2)
    assert "down" in entry["last_error"]
    assert entry["body"] == "hi"  # kept for a manual retry
    assert await queue.counts() == {
        ("ping", "pending"): 0,
        ("ping", "sending"): 0,
        ("ping", "sent"): 0,
        ("ping", "dead"): 1,
    }
    assert await queue.retry_dead("ping") == 1
    channel.failures = 0
    entry = await deliver_until_settled(work, "<2>")
    assert (entry["status"], channel.delivered_bodies) == (Delivery.sent, [("hi", None)])


async def test_a_queue_claims_only_the_channels_it_knows(app: FastAPI) -> None:
    await a_queue(app, Flaky(0)).enqueue("ping", Ping(message_id="<3>", destination="a", body=""))
    other = Flaky(0)
    other.name = "other"
    assert not await a_queue(app, other).deliver_one()
    entry = await queue.collection().find_one({"message_id": "<3>"})
    assert entry is not None
    assert (entry["status"], entry["attempts"]) == (Delivery.pending, 0)


async def test_an_entry_another_tool_wrote_oddly_dies_and_the_queue_goes_on(
    app: FastAPI,
) -> None:
    """An entry of a known channel without the fields its channel needs (no body):
    its attempts fail and it dies, and the worker still delivers the next one."""
    channel = Flaky(0)
    work = a_queue(app, channel, max_attempts=2)
    odd = {"channel": "ping", "message_id": "<odd>", "status": "pending"}
    await queue.collection().insert_one({**odd, "attempts": 0, "next_attempt_at": utcnow()})
    entry = await deliver_until_settled(work, "<odd>")
    assert (entry["status"], entry["attempts"]) == (Delivery.dead, 2)
    assert "body" in entry["last_error"]
    await work.enqueue("ping", Ping(message_id="<next>", destination="b", body="after"))
    assert (await deliver_until_settled(work, "<next>"))["status"] == Delivery.sent
    assert channel.delivered_bodies == [("after", None)]


def test_a_default_channel_must_be_one_of_the_queue_s(app: FastAPI) -> None:
    with pytest.raises(ValueError, match="default channel"):
        DurableQueue(services_of(app).settings, [Flaky(0)], Sealer(TEST_SECRET), default="email")


async def test_entries_naming_no_string_channel_are_counted_as_unknown(
    mongodb_url: str, tmp_path: Path
) -> None:
    """Another tool wrote channels that are not names: the counts (and /metrics) still
    answer, with those entries under `unknown`."""
    async with app_with(make_settings(mongodb_url, tmp_path)) as (_, client):
        odd = [{"channel": 5}, {"channel": ["ping", "email"]}, {"channel": {"a": 1}}]
        await queue.collection().insert_many(
            [{**doc, "message_id": f"<{i}>", "status": "pending"} for i, doc in enumerate(odd)]
        )
        await queue.collection().insert_one({"message_id": "<3>", "status": "sent"})  # no channel
        await queue.collection().insert_one({"message_id": "<4>", "status": ["sent"]})
        assert await queue.counts("email") == {
            **{("email", status.value): 0 for status in Delivery},
            ("email", "sent"): 1,
            **{("unknown", status.value): 0 for status in Delivery},
            ("unknown", "pending"): 3,
        }
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert 'docstore_queue_entries{channel="unknown",status="pending"} 3.0' in scraped.text
    assert 'docstore_outbox_messages{status="pending"} 3.0' in scraped.text


async def test_an_entry_whose_attempts_are_no_number_does_not_block_the_queue(
    app: FastAPI,
) -> None:
    """`$inc` fails on attempts that are not a number: such entries (due first) are left
    alone, and the entries behind them are delivered; one without attempts still is."""
    channel = Flaky(0)
    work = a_queue(app, channel)
    early = utcnow() - timedelta(hours=1)
    bad = [{"attempts": "3"}, {"attempts": None}, {"attempts": [1]}, {"attempts": {"n": 1}}]
    await queue.collection().insert_many(
        [
            {"channel": "ping", "message_id": f"<bad{i}>", "status": "pending", **doc}
            | {"next_attempt_at": early, "destination": "a", "body": "bad"}
            for i, doc in enumerate(bad)
        ]
    )
    fresh = {"channel": "ping", "status": "pending", "next_attempt_at": early}
    await queue.collection().insert_one(
        {**fresh, "message_id": "<none>", "destination": "a", "body": "no attempts"}
    )
    await work.enqueue("ping", Ping(message_id="<good>", destination="b", body="good"))
    assert await work.deliver_one()
    assert await work.deliver_one()
    assert not await work.deliver_one()
    assert sorted(channel.delivered_bodies) == [("good", None), ("no attempts", None)]
    for i, doc in enumerate(bad):
        left = await queue.collection().find_one({"message_id": f"<bad{i}>"})
        assert left is not None
        assert (left["status"], left["attempts"]) == ("pending", doc["attempts"])


async def test_an_entry_of_a_list_of_channels_is_not_claimed(app: FastAPI) -> None:
    """`{"channel": {"$in": [...]}}` matches a list holding a known name: such an entry
    would be claimed and then named no channel, stopping the worker."""
    channel = Flaky(0)
    work = a_queue(app, channel)
    await queue.collection().insert_one(
        {"channel": ["ping"], "message_id": "<list>", "status": "pending", "attempts": 0}
        | {"next_attempt_at": utcnow(), "destination": "a", "body": "list"}
    )
    assert not await work.deliver_one()
    assert channel.delivered_bodies == []


class Slow(Flaky):
    """Delivers after yielding to the loop, so two queues' claims and deliveries mix."""

    async def deliver(self, entry: Mapping[str, Any], secret: str | None) -> None:
        await asyncio.sleep(0)
        await super().deliver(entry, secret)


async def test_two_queues_claiming_at_once_deliver_each_entry_exactly_once(
    app: FastAPI,
) -> None:
    """Two workers (as in two processes) drain one outbox together: every entry is
    delivered, none twice."""
    first, second = Slow(0), Slow(0)
    queues = [a_queue(app, first), a_queue(app, second)]
    bodies = [f"message {n}" for n in range(30)]
    for n, body in enumerate(bodies):
        await queues[0].enqueue("ping", Ping(message_id=f"<{n}>", destination="a", body=body))

    async def drain(work: DurableQueue) -> None:
        while await work.deliver_one():
            pass

    await asyncio.gather(*(drain(work) for work in queues))
    delivered = [body for body, _ in first.delivered_bodies + second.delivered_bodies]
    assert sorted(delivered) == sorted(bodies)
    assert first.delivered_bodies  # both took part: the claims did race
    assert second.delivered_bodies
    statuses = await queue.collection().distinct("status", {"channel": "ping"})
    assert statuses == [Delivery.sent]

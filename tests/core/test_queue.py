"""The durable queue with a channel of its own (not email): what every channel gets from
it, claim, retry with backoff, dead after the last attempt, manual retry, sealed
secrets, counts by channel, against the real database."""

from collections.abc import Mapping
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from api.core import queue
from api.core.queue import DurableQueue, Entry, Sealer
from documents import Delivery
from documents.base import utcnow
from tests.conftest import TEST_SECRET, eventually, services_of


class Ping(BaseModel):
    message_id: str
    destination: str
    body: str


class Flaky:
    """Fails its first `failures` deliveries, then records what it delivered."""

    name = "ping"

    def __init__(self, failures: int) -> None:
        self.failures, self.delivered_bodies = failures, list[tuple[str, str | None]]()

    def binding(self, entry: Mapping[str, Any]) -> str:
        return f"{entry['message_id']}\n{entry['destination']}"

    async def deliver(self, entry: Mapping[str, Any], secret: str | None) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the other end is down")
        self.delivered_bodies.append((entry["body"], secret))

    def delivered(self, entry: Mapping[str, Any]) -> Entry:
        return {"body": ""}

    def describe(self, entry: Mapping[str, Any]) -> str:
        return str(entry["message_id"])


def a_queue(app: FastAPI, channel: Flaky, max_attempts: int = 5) -> DurableQueue:
    settings = services_of(app).settings.model_copy(
        update={"outbox_backoff_s": 0.001, "outbox_max_attempts": max_attempts}
    )
    return DurableQueue(settings, [channel], Sealer(TEST_SECRET))


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

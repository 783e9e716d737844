"""The fast path of fresh deliveries: the dispatcher's process stores them claimed by
its own worker and hands them over in memory (api/core/queue.py), delivered ones are
recorded a group at a time, and a webhook read serves its deliveries for a moment.
Each test fails with the protection it names removed (checked by hand)."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from starlette.requests import Request
from starlette.responses import Response

from api.core import queue
from api.core.queue import DurableQueue
from api.webhooks import channel
from api.webhooks.channel import WebhookChannel
from api.webhooks.dispatcher import Dispatcher
from documents import Webhook
from tests.commands import recording
from tests.conftest import app_with, create_item, eventually, make_account, services_of
from tests.webhooks.conftest import Answer, Receiver, hook_settings, hooks_app, make_webhook


def slow(seconds: float) -> Answer:
    async def answer(request: Request) -> Response:
        await asyncio.sleep(seconds)
        return Response(status_code=204)

    return answer


def held(until: asyncio.Event) -> Answer:
    """An answer that waits for the test to let it go."""

    async def answer(request: Request) -> Response:
        await until.wait()
        return Response(status_code=204)

    return answer


async def idle(work: DurableQueue) -> bool:
    """Nothing handed over waits, and no delivery is under way."""
    return not work._tasks and not work._held


async def stored() -> list[Any]:
    """The webhook deliveries in the queue."""
    found: list[Any] = await queue.collection().find({"channel": "webhook"}).to_list()
    return found


async def waiting(work: DurableQueue, count: int) -> None:
    """Until `count` entries are handed over and wait (none of them started)."""

    async def enough() -> bool:
        return sum(len(lane) for lane in work._ready.values()) >= count

    await eventually(enough)


async def test_fresh_deliveries_cost_no_claim_and_few_reads(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # A long poll interval: the worker reads what is due only when told to.
    async with hooks_app(mongodb_url, tmp_path, outbox_poll_s=30.0) as (app, client):
        work = services_of(app).get(DurableQueue)
        alice = await make_account(app, "alice")
        await make_webhook(client, alice, receiver.url())
        await create_item(client, alice, title="warm-up")  # the dispatcher reads its webhooks
        await receiver.arrived("/hook", 1)

        await eventually(lambda: idle(work))
        database = services_of(app).settings.mongodb_db
        with recording(database) as commands:
            batch = {
                "operations": [{"op": "create", "item": {"title": f"n{n}"}} for n in range(20)]
            }
            made = await client.post("/api/v1/items/batch", json=batch, headers=alice.headers)
            assert made.status_code == 200, made.text
            await receiver.arrived("/hook", 21)
            await eventually(lambda: idle(work))
            sent = list(commands)

    def count(name: str, collection: str) -> int:
        return sum(1 for c in sent if c["name"] == name and c.get(name) == collection)

    # No query for what is due and no claim: the entries were handed over as stored.
    assert count("find", "outbox") == 0
    assert count("findAndModify", "outbox") == 0
    assert count("insert", "outbox") <= 4  # a batch of events stored at once
    assert count("update", "outbox") <= 15  # recorded together: 4 seen here, 20 one by one
    assert count("find", "webhooks") <= 4  # read once a second, not once a delivery


async def test_a_webhook_changed_through_the_process_is_used_at_once(
    mongodb_url: str, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel, "HOOK_FRESH_S", 60.0)  # kept all test long, but for changes
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        alice = await make_account(app, "alice")
        hook = await make_webhook(client, alice, receiver.url("/old"))
        await create_item(client, alice, title="one")
        await receiver.arrived("/old", 1)  # the webhook is read, and kept
        moved = await client.patch(
            f"/api/v1/webhooks/{hook['id']}", json={"url": receiver.url("/new")},
            headers=alice.headers,
        )  # fmt: skip
        assert moved.status_code == 200, moved.text
        await create_item(client, alice, title="two")
        await receiver.arrived("/new", 1)
        assert len(receiver.at("/old")) == 1


async def test_deliveries_waiting_for_a_webhook_disabled_meanwhile_are_not_sent(
    mongodb_url: str, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel, "HOOK_FRESH_S", 60.0)
    let_go = asyncio.Event()
    receiver.answers["/held"] = held(let_go)
    async with hooks_app(mongodb_url, tmp_path, webhook_max_in_flight=1) as (app, client):
        work = services_of(app).get(DurableQueue)
        alice = await make_account(app, "alice")
        hook = await make_webhook(client, alice, receiver.url("/held"))
        for n in range(3):
            await create_item(client, alice, title=f"n{n}")
        await waiting(work, 2)  # one sent (held), two waiting with the webhook read
        off = await client.patch(
            f"/api/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=alice.headers
        )
        assert off.status_code == 200, off.text
        let_go.set()

        await eventually(lambda: idle(work))
        assert len(receiver.at("/held")) == 1


async def test_content_deleted_for_good_while_its_delivery_waits_is_not_sent(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    let_go = asyncio.Event()
    receiver.answers["/held"] = held(let_go)
    async with hooks_app(mongodb_url, tmp_path, webhook_max_in_flight=1) as (app, client):
        work = services_of(app).get(DurableQueue)
        alice = await make_account(app, "alice")
        await make_webhook(client, alice, receiver.url("/held"))
        await create_item(client, alice, title="first")
        secret = await create_item(client, alice, title="top secret plan")
        await waiting(work, 1)  # "first" is being sent (held); the plan's delivery waits
        gone = await client.delete(
            f"/api/v1/items/{secret['id']}?permanent=true", headers=alice.headers
        )
        assert gone.status_code == 204
        await waiting(work, 2)  # the deletion, read from the stream, waits behind it
        let_go.set()
        await receiver.arrived("/held", 2)  # "first", then the plan's deletion

        await eventually(lambda: idle(work))
        assert "top secret plan" not in str([got.body for got in receiver.at("/held")])


async def test_a_dispatcher_running_behind_stores_no_content_deleted_before(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path, outbox_worker=False) as (app, client):
        dispatcher = services_of(app).get(Dispatcher)
        alice = await make_account(app, "alice")
        await make_webhook(client, alice, receiver.url())
        await eventually(lambda: _now(dispatcher.holding))
        await dispatcher.stop()  # behind: it reads the changes after the deletion
        item = await create_item(client, alice, title="top secret plan")
        gone = await client.delete(
            f"/api/v1/items/{item['id']}?permanent=true", headers=alice.headers
        )
        assert gone.status_code == 204
        dispatcher.start()

        async def both_stored_without_it() -> bool:
            found = await stored()
            return len(found) == 2 and "top secret plan" not in str(found)

        await eventually(both_stored_without_it)  # (times out when the content stays)
        assert sorted(entry["type"] for entry in await stored()) == [
            "item.created",
            "item.deleted",
        ]


async def _now(value: bool) -> bool:
    return value


async def test_a_clean_stop_gives_back_what_was_handed_over_and_not_started(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    let_go = asyncio.Event()
    receiver.answers["/held"] = held(let_go)
    settings = hook_settings(mongodb_url, tmp_path, webhook_max_in_flight=1)
    async with app_with(settings) as (app, client):
        work = services_of(app).get(DurableQueue)
        alice = await make_account(app, "alice")
        await make_webhook(client, alice, receiver.url("/held"))
        for n in range(4):
            await create_item(client, alice, title=f"n{n}")
        await waiting(work, 3)  # one being sent (held), three waiting
        work.ask_to_stop()  # as at shutdown: no more is started
        let_go.set()
        await work.stop()
        async with AsyncMongoClient(mongodb_url) as mongo:
            outbox = mongo[settings.mongodb_db].outbox
            entries = await outbox.find({"channel": "webhook"}).to_list()
    # The one being sent finished; the others are due again, for any worker.
    states = Counter((e["status"], e["leased_by"], e["attempts"]) for e in entries)
    assert states[("pending", None, 0)] == 3, states
    assert sum(states.values()) == 4, states
    assert len(receiver.at("/held")) == 1


@asynccontextmanager
async def behind_a_slow_receiver(
    mongodb_url: str, tmp_path: Path, receiver: Receiver, changes: int, lease_s: float
) -> AsyncIterator[FastAPI]:
    """`changes` deliveries handed over one at a time to a slow receiver, with another
    process's worker (no dispatcher) on the same database, which claims any it sees
    lapse; the dispatching app, once all arrived."""
    first = hook_settings(
        mongodb_url, tmp_path / "a", webhook_max_in_flight=1, outbox_lease_s=lease_s
    )
    other = first.model_copy(update={"data_dir": tmp_path / "b", "webhook_dispatcher": False})
    async with app_with(first) as (app, _), app_with(other) as (app_b, client):
        alice = await make_account(app_b, "alice")
        await make_webhook(client, alice, receiver.url("/slow"))
        for n in range(changes):
            await create_item(client, alice, title=f"n{n}")
        await receiver.arrived("/slow", changes, within_s=30)
        yield app


async def test_a_handed_over_entry_left_waiting_past_its_lease_is_sent_once(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.answers["/slow"] = slow(0.8)  # the last of six waits longer than the lease
    async with behind_a_slow_receiver(mongodb_url, tmp_path, receiver, 6, 3) as app:
        await asyncio.sleep(1.5)  # a second copy of any would have arrived by now
        ids = Counter(r.headers["webhook-id"] for r in receiver.at("/slow"))
        assert len(ids) == 6, ids
        assert set(ids.values()) == {1}, f"delivered twice: {ids}"
        assert services_of(app).get(DurableQueue)._held == set()


async def test_entries_waiting_behind_a_slow_receiver_keep_their_leases(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # Eight at half a second each: the last waits twice the lease. Renewed as they
    # wait, none lapses: the other process's worker never sees one due.
    receiver.answers["/slow"] = slow(0.5)
    async with behind_a_slow_receiver(mongodb_url, tmp_path, receiver, 8, 2) as app:
        mine = services_of(app).get(DurableQueue).name

        async def all_recorded() -> bool:
            found = await stored()
            return len(found) == 8 and all(entry["status"] == "sent" for entry in found)

        await eventually(all_recorded)
        sent_by = Counter(entry["leased_by"] for entry in await stored())
        assert sent_by == {mine: 8}, sent_by


async def test_a_webhook_another_tool_mangled_is_read_without_failing(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        alice = await make_account(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        hooks = Webhook.get_pymongo_collection()
        await hooks.update_one({"_id": ObjectId(hook["id"])}, {"$set": {"owner_id": [1, 2]}})
        deliveries = services_of(app).get(WebhookChannel)
        deliveries.forget(owner_id=alice.id)  # a change made here: reads are not kept now
        read = await deliveries.webhook(ObjectId(hook["id"]))  # an unhashable owner
        assert read is not None
        assert read["owner_id"] == [1, 2]

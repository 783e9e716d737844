"""One dispatcher of all processes, and exactly one delivery per change and webhook
across a killed process: the lease and the saved position, tested with real processes."""

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx2
from bson import ObjectId
from pymongo import AsyncMongoClient

from api.webhooks.dispatcher import Dispatcher
from tests.conftest import create_item, eventually, make_account, services_of
from tests.serving import api_env, running_api, signed_in
from tests.webhooks.conftest import Receiver, hook_settings, make_webhook

QUICK = {
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "WEBHOOK_BACKOFF_S": "0.05",
    "OUTBOX_POLL_S": "0.05",
    "WEBHOOK_LEASE_S": "2",
    # A delivery the killed process was sending is claimed again once its lease lapses.
    "OUTBOX_LEASE_S": "3",
}


async def test_one_process_dispatches_and_another_takes_over_when_it_stops(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    from tests.conftest import app_with

    first = hook_settings(mongodb_url, tmp_path / "a", webhook_lease_s=2)
    second = first.model_copy(update={"data_dir": tmp_path / "b"})
    # Beanie binds its models to the app started last: requests go to that one.
    async with app_with(first) as (app_a, _), app_with(second) as (app_b, client):
        dispatchers = [services_of(app).get(Dispatcher) for app in (app_a, app_b)]

        async def settled() -> bool:
            return sum(d.holding for d in dispatchers) == 1

        await eventually(settled)
        await asyncio.sleep(1.5)  # a lease renewed, not taken over
        assert sum(d.holding for d in dispatchers) == 1
        alice = await make_account(app_b, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        await create_item(client, alice, title="one")
        await receiver.arrived("/hook", 1)
        holder = next(d for d in dispatchers if d.holding)
        other = next(d for d in dispatchers if not d.holding)
        await holder.stop()  # a clean stop gives the lease up
        await eventually(lambda: _true(other.holding))
        await create_item(client, alice, title="two")
        got = await receiver.arrived("/hook", 2)
        titles = [r.verified(hook["secret"])["data"]["item"]["title"] for r in got]
        assert titles == ["one", "two"]


async def _true(value: bool) -> bool:
    return value


async def test_a_killed_api_process_loses_and_repeats_no_delivery(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Changes are written (by another tool, straight into the database) before, while
    and after the API process is killed; once it is back, every change has exactly one
    delivery to the webhook, and each arrived."""
    database = f"test_{uuid.uuid4().hex[:16]}"
    env = api_env(mongodb_url, database, tmp_path, **QUICK)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    items = mongo[database].items
    written: list[ObjectId] = []
    total = 150
    try:
        async with running_api(env) as (base, process):
            token = await signed_in(base, "alice")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(base_url=base, headers=headers) as api:
                made = await api.post("/api/v1/webhooks", json={"url": receiver.url()})
                assert made.status_code == 201, made.text
                first = (await api.post("/api/v1/items", json={"title": "template"})).json()
            template = await items.find_one({"_id": ObjectId(first["id"])})
            assert template is not None
            written.append(template["_id"])

            async def write(count: int) -> None:
                for n in range(count):
                    copy = {**template, "_id": ObjectId(), "title": f"change {n}"}
                    await items.insert_one(copy)
                    written.append(copy["_id"])
                    await asyncio.sleep(0.01)

            writing = asyncio.create_task(write(total))
            await eventually(lambda: _true(len(receiver.seen) >= 20), within_s=30)
            process.send_signal(signal.SIGKILL)  # mid-stream: no clean stop
            await process.wait()
        await asyncio.sleep(0.5)  # changes written while no process dispatches
        async with running_api(env):
            await writing
            assert len(written) == total + 1
            await eventually(lambda: _true(_items_seen(receiver) >= set(written)), within_s=60)
        found = mongo[database].outbox.find({"channel": "webhook"}, {"item_id": 1})
        per_item: dict[Any, int] = {}
        async for entry in found:
            per_item[entry["item_id"]] = per_item.get(entry["item_id"], 0) + 1
        assert per_item == dict.fromkeys(written, 1)
        ids = {r.headers["webhook-id"] for r in receiver.seen}
        assert len(ids) == len(written)  # a resend after the kill repeats an id, never adds one
    finally:
        await mongo.drop_database(database)
        await mongo.close()


def _items_seen(receiver: Receiver) -> set[ObjectId]:
    return {ObjectId(r.payload["data"]["item"]["id"]) for r in receiver.seen}

"""Deliveries end to end: the real app dispatching from the change stream and POSTing
to a real receiver on a loopback port, every delivery verified by the `standardwebhooks`
package (not our signing code)."""

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from bson import ObjectId
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.core import queue
from documents import Webhook
from tests.conftest import Account, create_item, eventually, make_account
from tests.webhooks.conftest import (
    Receiver,
    deliveries,
    hooks_app,
    make_webhook,
    newest_delivery_when,
    when_disabled,
)


async def accounts(app: FastAPI, *names: str) -> list[Account]:
    return [await make_account(app, name) for name in names]


async def test_every_kind_of_change_arrives_signed_as_its_owner_reads_it(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        alice, bob = await accounts(app, "alice", "bob")
        hers = await make_webhook(client, alice, receiver.url("/alice"))
        his = await make_webhook(client, bob, receiver.url("/bob"))
        item = await create_item(client, alice, title="plans", data={"n": 1})
        url = f"/api/v1/items/{item['id']}"
        patched = await client.patch(url, json={"data": {"n": 2}}, headers=alice.headers)
        assert patched.status_code == 200
        share = {"user": "bob", "role": "viewer"}
        assert (
            await client.post(f"{url}/shares", json=share, headers=alice.headers)
        ).status_code == 201
        assert (await client.delete(url, headers=alice.headers)).status_code == 204
        restored = await client.post(f"{url}/restore", headers=alice.headers)
        assert restored.status_code == 200
        ended = await client.delete(f"{url}/shares/{bob.id}", headers=alice.headers)
        assert ended.status_code == 204
        batch = {"operations": [{"op": "create", "item": {"title": "batched"}}]}
        assert (
            await client.post("/api/v1/items/batch", json=batch, headers=alice.headers)
        ).status_code == 200

        # In no guaranteed order (several may be in flight at once): found by type.
        got = [r.verified(hers["secret"]) for r in await receiver.arrived("/alice", 5)]
        types = [payload["type"] for payload in got]
        # A share's start and end change nothing of what the owner reads: no event.
        assert sorted(types) == sorted(
            ["item.created", "item.updated", "item.deleted", "item.restored", "item.created"]
        )
        first = next(p for p in got if p["data"].get("item", {}).get("title") == "plans")
        assert first["type"] == "item.created"
        assert first["data"]["item"]["access"] == "owner"
        assert _of(got, "item.updated")["data"]["item"]["data"] == {"n": 2}
        assert _of(got, "item.deleted")["data"] == {"item": {"id": item["id"]}}
        now = (await client.get(url, headers=alice.headers)).json()
        assert _of(got, "item.restored")["data"]["item"] == now  # as REST shows it

        his_got = [r.verified(his["secret"]) for r in await receiver.arrived("/bob", 4)]
        his_types = sorted(payload["type"] for payload in his_got)
        assert his_types == ["item.deleted", "item.restored", "item.shared", "item.unshared"]
        assert _of(his_got, "item.shared")["data"]["item"]["access"] == "viewer"
        assert _of(his_got, "item.unshared")["data"] == {"item": {"id": item["id"]}}
        # Each delivery is one event: ids are unique, and the log shows them delivered.
        ids = [r.headers["webhook-id"] for r in receiver.seen]
        assert len(set(ids)) == len(ids) == 9

        async def settled() -> bool:  # received, then recorded as delivered
            log = await deliveries(client, alice, hers["id"])
            return [entry["status"] for entry in log] == ["delivered"] * 5

        await eventually(settled)
        log = await deliveries(client, alice, hers["id"])
        assert all(entry["response_status"] == 204 for entry in log)
        # Newest first (changes read together are stored together, perhaps in one
        # millisecond: among those the order is the id's).
        times = [entry["created_at"] for entry in log]
        assert times == sorted(times, reverse=True)
        assert sorted(entry["type"] for entry in log) == sorted(types)


def _of(payloads: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [payload for payload in payloads if payload["type"] == kind]
    return found


async def test_a_change_by_another_tool_is_delivered_too(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url(), events=["item.created"])
        item = await create_item(client, alice, title="by the API")
        items = app.state.services.client[app.state.services.settings.mongodb_db].items
        stored = await items.find_one({"_id": ObjectId(item["id"])})
        assert stored is not None
        copy = {**stored, "_id": ObjectId(), "title": "written directly"}
        await items.insert_one(copy)
        got = await receiver.arrived("/hook", 2)
        titles = [r.verified(hook["secret"])["data"]["item"]["title"] for r in got]
        assert titles == ["by the API", "written directly"]


async def test_retries_honour_retry_after_then_deliver(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    answers = iter([503, 503, 204])
    stamps: list[float] = []

    async def busy(request: Request) -> Response:
        stamps.append(time.monotonic())
        status = next(answers)
        return Response(status_code=status, headers={"Retry-After": "1"} if status == 503 else {})

    receiver.answers["/hook"] = busy
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        await create_item(client, alice)
        got = await receiver.arrived("/hook", 3)
        assert len({r.headers["webhook-id"] for r in got}) == 1  # the same delivery
        assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(stamps))

        entry = await newest_delivery_when(client, alice, hook["id"], "delivered")
        assert (entry["attempts"], entry["response_status"], entry["error"]) == (3, 204, None)


async def test_gone_disables_the_webhook_and_emails_its_owner(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async def gone(request: Request) -> Response:
        return Response(status_code=410)

    receiver.answers["/hook"] = gone
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        await create_item(client, alice)
        await receiver.arrived("/hook", 1)
        url = f"/api/v1/webhooks/{hook['id']}"
        assert "410" in await when_disabled(client, alice, hook["id"])
        # (Disabled as the answer comes; the delivery is recorded dead just after.)
        entry = await newest_delivery_when(client, alice, hook["id"], "dead")
        assert (entry["attempts"], entry["response_status"]) == (1, 410)
        assert len(await deliveries(client, alice, hook["id"])) == 1
        mail = await queue.collection().find_one({"kind": "webhook-disabled"})
        assert mail is not None
        assert mail["to"] == "alice@example.com"
        await create_item(client, alice, title="while disabled")
        await asyncio.sleep(1)
        assert len(receiver.seen) == 1
        assert len(await deliveries(client, alice, hook["id"])) == 1
        await client.patch(url, json={"enabled": True}, headers=alice.headers)  # back on


async def test_repeated_failures_disable_the_webhook(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async def broken(request: Request) -> Response:
        return Response(status_code=500)

    receiver.answers["/hook"] = broken
    settings = {"webhook_max_attempts": 2, "webhook_disable_after": 2}
    async with hooks_app(mongodb_url, tmp_path, **settings) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        await create_item(client, alice, title="one")
        await create_item(client, alice, title="two")
        reason = await when_disabled(client, alice, hook["id"])
        assert "2 deliveries in a row" in reason
        log = await deliveries(client, alice, hook["id"])
        assert [(e["status"], e["attempts"], e["response_status"]) for e in log] == [
            ("dead", 2, 500)
        ] * 2

        async def emailed() -> bool:  # the email is queued just after the webhook is off
            return await queue.collection().count_documents({"kind": "webhook-disabled"}) >= 1

        await eventually(emailed)
        await asyncio.sleep(0.5)
        assert await queue.collection().count_documents({"kind": "webhook-disabled"}) == 1


async def test_a_redirect_is_not_followed(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async def elsewhere(request: Request) -> Response:
        return RedirectResponse("/elsewhere", status_code=307)

    receiver.answers["/hook"] = elsewhere
    async with hooks_app(mongodb_url, tmp_path, webhook_max_attempts=1) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        await create_item(client, alice)

        entry = await newest_delivery_when(client, alice, hook["id"], "dead")
        assert entry["response_status"] == 307
        assert receiver.at("/elsewhere") == []


async def test_an_address_refused_at_delivery_is_never_connected_to(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """A webhook whose URL passed when it was made (another tool changed it since, or the
    allowed networks were narrowed) is checked again at each attempt."""
    async with hooks_app(mongodb_url, tmp_path, webhook_max_attempts=1) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        await Webhook.get_pymongo_collection().update_one(
            {"_id": ObjectId(hook["id"])},
            {"$set": {"url": f"http://10.0.0.1:{receiver.port}/hook"}},
        )
        await create_item(client, alice)

        entry = await newest_delivery_when(client, alice, hook["id"], "dead")
        assert entry["error"].startswith("refused")
        assert entry["response_status"] is None
        assert receiver.seen == []


async def test_rotation_signs_with_both_secrets_and_ping_and_retry_send_again(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        url = f"/api/v1/webhooks/{hook['id']}"
        rotated = (await client.post(f"{url}/rotate-secret", headers=alice.headers)).json()
        ping = await client.post(f"{url}/ping", headers=alice.headers)
        assert ping.status_code == 202, ping.text
        assert ping.json()["type"] == "webhook.ping"
        [got] = await receiver.arrived("/hook", 1)
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        for secret in (hook["secret"], rotated["secret"]):  # either verifies it
            assert got.verified(secret)["data"] == {"webhook": {"id": hook["id"]}}
        assert got.headers["webhook-id"] == ping.json()["id"]

        await newest_delivery_when(client, alice, hook["id"], "delivered")
        again = await client.post(
            f"{url}/deliveries/{ping.json()['id']}/retry", headers=alice.headers
        )
        assert again.status_code == 202, again.text
        second = (await receiver.arrived("/hook", 2))[1]
        assert second.headers["webhook-id"] == got.headers["webhook-id"]
        assert second.verified(rotated["secret"])["type"] == "webhook.ping"


async def test_a_slow_receiver_does_not_hold_up_another_webhook(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(3)
        return Response(status_code=204)

    receiver.answers["/slow"] = slow
    # Four deliveries at once in all, one per webhook: without lanes, the slow
    # receiver's deliveries would take every place (each waits out the timeout).
    settings = {"outbox_concurrency": 4, "webhook_max_in_flight": 1, "webhook_timeout_s": 2.0}
    async with hooks_app(mongodb_url, tmp_path, **settings) as (app, client):
        alice, bob = await accounts(app, "alice", "bob")
        await make_webhook(client, alice, receiver.url("/slow"))
        await make_webhook(client, bob, receiver.url("/fast"))
        for n in range(8):
            await create_item(client, alice, title=f"slow {n}")
        started = time.monotonic()
        for n in range(8):
            await create_item(client, bob, title=f"fast {n}")
        await receiver.arrived("/fast", 8, within_s=30)
        assert time.monotonic() - started < 4, "the fast webhook waited for the slow one"
        assert len(receiver.at("/slow")) <= 3


async def test_deleting_an_item_for_good_removes_its_content_from_deliveries(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        [alice] = await accounts(app, "alice")
        hook = await make_webhook(client, alice, receiver.url())
        item = await create_item(client, alice, title="top secret plan")
        await receiver.arrived("/hook", 1)
        gone = await client.delete(
            f"/api/v1/items/{item['id']}?permanent=true", headers=alice.headers
        )
        assert gone.status_code == 204
        await receiver.arrived("/hook", 2)
        left: list[Any] = [entry async for entry in queue.collection().find({})]
        assert "top secret plan" not in str(left)
        [deleted, created] = await deliveries(client, alice, hook["id"])
        assert (deleted["type"], created["type"]) == ("item.deleted", "item.created")
        again = await client.post(
            f"/api/v1/webhooks/{hook['id']}/deliveries/{created['id']}/retry",
            headers=alice.headers,
        )
        assert again.status_code == 409


async def test_deleting_an_account_removes_its_webhooks_and_deliveries(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        [alice] = await accounts(app, "alice")
        admin = await make_account(app, "root", superuser=True)
        await make_webhook(client, alice, receiver.url())
        await create_item(client, alice)
        await receiver.arrived("/hook", 1)
        gone = await client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers)
        assert gone.status_code == 204, gone.text
        assert await Webhook.get_pymongo_collection().count_documents({}) == 0
        assert await queue.collection().count_documents({"channel": "webhook"}) == 0


async def test_the_disabled_webhook_gets_nothing_and_a_deactivated_owner_neither(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        alice, bob = await accounts(app, "alice", "bob")
        admin = await make_account(app, "root", superuser=True)
        hers = await make_webhook(client, alice, receiver.url("/alice"))
        await make_webhook(client, bob, receiver.url("/bob"))
        off = await client.patch(
            f"/api/v1/webhooks/{hers['id']}", json={"enabled": False}, headers=alice.headers
        )
        assert off.status_code == 200
        deactivated = await client.patch(
            f"/api/v1/users/{bob.id}", json={"is_active": False}, headers=admin.headers
        )
        assert deactivated.status_code == 200, deactivated.text
        await create_item(client, alice, title="nobody hears")
        await create_item(client, admin, title="marker")
        await make_webhook(client, admin, receiver.url("/root"))
        await create_item(client, admin, title="heard")
        await receiver.arrived("/root", 1)
        assert [r.path for r in receiver.seen] == ["/root"]


async def test_deactivating_an_account_stops_its_webhooks_at_once(
    mongodb_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with hooks_app(mongodb_url, tmp_path) as (app, client):
        [bob] = await accounts(app, "bob")
        admin = await make_account(app, "root", superuser=True)
        await make_webhook(client, bob, receiver.url("/bob"))
        item = await create_item(client, bob, title="before")
        await receiver.arrived("/bob", 1)  # the dispatcher knows bob's webhook now
        deactivated = await client.patch(
            f"/api/v1/users/{bob.id}", json={"is_active": False}, headers=admin.headers
        )
        assert deactivated.status_code == 200, deactivated.text
        items = app.state.services.client[app.state.services.settings.mongodb_db].items
        await items.update_one({"_id": ObjectId(item["id"])}, {"$set": {"title": "after"}})
        await make_webhook(client, admin, receiver.url("/root"))
        await create_item(client, admin, title="marker")
        await receiver.arrived("/root", 1)
        assert [r.path for r in receiver.seen] == ["/bob", "/root"]

"""The trash: DELETE moves an item there, restore brings it back with its shares,
permanent deletes and purges leave nothing of it, and the feed says so."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import httpx2
from bson import ObjectId
from fastapi import FastAPI

from documents import Item, TrashedItem
from tests.conftest import (
    Account,
    app_with,
    create_item,
    fail_next,
    make_account,
    make_settings,
    services_of,
)
from tests.live.test_live_sharing import share

ITEMS = "/api/v1/items"
TRASH = f"{ITEMS}/trash"


def at(item: dict[str, Any]) -> str:
    return f"{ITEMS}/{item['id']}"


async def trash_of(client: httpx2.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get(TRASH, headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def everything_stored(app: FastAPI) -> bytes:
    """Every document of every collection as stored (BSON: strings and binary values,
    such as a kept answer's body, as they are), as another tool reading it sees it."""
    database = services_of(app).client[services_of(app).settings.mongodb_db]
    dumped = []
    for name in await database.list_collection_names():
        dumped += [bson.encode(doc) async for doc in database[name].find()]
    return b"\n".join(dumped)


async def test_a_deleted_item_is_gone_for_everyone_until_its_owner_restores_it(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    item = await create_item(client, alice, title="plans", tags=["x"])
    await share(client, alice, item, "bob", "editor")
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    for account in (alice, bob):
        assert (await client.get(at(item), headers=account.headers)).status_code == 404
        listed = (await client.get(ITEMS, headers=account.headers)).json()["items"]
        assert listed == []
    (trashed,) = await trash_of(client, alice)
    assert (trashed["id"], trashed["title"], trashed["version"]) == (item["id"], "plans", 1)
    assert "readers" not in trashed
    assert "shares" not in trashed
    days = timedelta(days=30).total_seconds()
    deleted_at, purge_at = trashed["deleted_at"], trashed["purge_at"]
    assert _seconds(purge_at) - _seconds(deleted_at) == days
    assert await trash_of(client, bob) == []  # a sharee has no trash of someone else's
    for account, expected in ((bob, 404), (alice, 200)):  # a sharee cannot restore it
        answer = await client.post(f"{at(item)}/restore", headers=account.headers)
        assert answer.status_code == expected, answer.text
    restored = answer.json()
    assert (restored["id"], restored["title"], restored["tags"]) == (item["id"], "plans", ["x"])
    assert restored["version"] == 2
    assert answer.headers["etag"] == '"2"'
    back = await client.get(at(item), headers=bob.headers)
    assert (back.status_code, back.json()["access"]) == (200, "editor")  # with their role
    assert await trash_of(client, alice) == []
    again = await client.post(f"{at(item)}/restore", headers=alice.headers)
    assert again.status_code == 409
    assert again.json()["type"] == "urn:docstore:problem:not-in-trash"


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_strangers_and_sharees_find_nothing_to_restore_or_purge(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    item = await create_item(client, alice, title="mine")
    await share(client, alice, item, "bob", "viewer")
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    nobody = f"{ITEMS}/{ObjectId()}"
    for url in (at(item), nobody):
        assert (await client.post(f"{url}/restore", headers=bob.headers)).status_code == 404
        purge = await client.delete(url, params={"permanent": "true"}, headers=bob.headers)
        assert purge.status_code == 404
        assert (await client.delete(url, headers=bob.headers)).status_code == 404
    assert [t["id"] for t in await trash_of(client, alice)] == [item["id"]]
    not_trashed = await create_item(client, alice, title="live")
    await share(client, alice, not_trashed, "bob", "editor")
    restore = await client.post(f"{at(not_trashed)}/restore", headers=bob.headers)
    assert restore.status_code == 409  # an item they can read, not in the trash
    stranger = await client.post(f"{at(not_trashed)}/restore", headers=alice.headers)
    assert stranger.status_code == 409


async def test_permanent_deletes_leave_nothing_of_the_content(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    marker = "unrepeatable-content-7f3a"
    made = []
    for n, fields in enumerate([{"data": {"note": marker}}, {"description": marker}]):
        keyed = {**alice.headers, "Idempotency-Key": f"made-{n}"}  # answers kept, with it
        answer = await client.post(ITEMS, json={"title": f"{marker}-{n}", **fields}, headers=keyed)
        assert answer.status_code == 201
        made.append(answer.json())
    from_items, from_trash = made
    assert (await client.delete(at(from_trash), headers=alice.headers)).status_code == 204
    assert marker.encode() in await everything_stored(app)  # the trash keeps it, until...
    for item in (from_items, from_trash):
        gone = await client.delete(at(item), params={"permanent": "true"}, headers=alice.headers)
        assert gone.status_code == 204, gone.text
        assert (await client.get(at(item), headers=alice.headers)).status_code == 404
    assert await trash_of(client, alice) == []
    assert marker.encode() not in await everything_stored(app)


async def test_a_batch_delete_moves_to_the_trash_too(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    item = await create_item(client, alice, title="batched away")
    operations = [{"op": "delete", "id": item["id"]}]
    response = await client.post(
        f"{ITEMS}/batch", json={"operations": operations}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert [t["title"] for t in await trash_of(client, alice)] == ["batched away"]


async def test_if_match_guards_the_move_and_a_concurrent_restore_lands_once(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    item = await create_item(client, alice, title="v1")
    await client.patch(at(item), json={"title": "v2"}, headers=alice.headers)
    stale = await client.delete(at(item), headers={**alice.headers, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert (await client.get(at(item), headers=alice.headers)).status_code == 200
    moved = await client.delete(at(item), headers={**alice.headers, "If-Match": '"2"'})
    assert moved.status_code == 204
    answers = await asyncio.gather(
        *(client.post(f"{at(item)}/restore", headers=alice.headers) for _ in range(10))
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 9
    assert await Item.get_pymongo_collection().count_documents({"_id": ObjectId(item["id"])}) == 1
    assert await TrashedItem.get_pymongo_collection().count_documents({}) == 0


async def test_the_trash_expires_by_ttl_and_goes_with_the_account(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    indexes = await TrashedItem.get_pymongo_collection().index_information()
    ttl = [i for i in indexes.values() if i["key"] == [("purge_at", 1)]]
    assert len(ttl) == 1
    assert ttl[0]["expireAfterSeconds"] == 0
    theirs = await create_item(client, bob, title="bob's")
    await share(client, bob, theirs, "alice", "viewer")
    assert (await client.delete(at(theirs), headers=bob.headers)).status_code == 204
    mine = await create_item(client, alice, title="alice's")
    assert (await client.delete(at(mine), headers=alice.headers)).status_code == 204
    gone = await client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers)
    assert gone.status_code == 204
    trash = TrashedItem.get_pymongo_collection()
    assert await trash.count_documents({"owner_id": alice.user.id}) == 0
    assert await trash.count_documents({"readers": alice.user.id}) == 0  # off bob's share
    restored = await client.post(f"{at(theirs)}/restore", headers=bob.headers)
    assert restored.status_code == 200


async def test_an_odd_trash_entry_is_skipped_not_a_500(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    item = await create_item(client, alice, title="fine")
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    now = datetime.now(UTC)
    valid = {"owner_id": alice.user.id, "deleted_at": now, "purge_at": now, "version": 1}
    valid |= {"created_at": now, "updated_at": now}
    odd = [
        {**valid, "title": 7},  # not an item
        {**valid, "title": "holds an id", "data": {"x": ObjectId()}},  # not JSON
        {**valid, "title": "dated oddly", "deleted_at": "yesterday"},  # no sort key
    ]
    inserted = await TrashedItem.get_pymongo_collection().insert_many(odd)
    assert [t["title"] for t in await trash_of(client, alice)] == ["fine"]
    for odd_id in inserted.inserted_ids[:2]:  # restoring one is a 409, and it stays put
        answer = await client.post(f"{ITEMS}/{odd_id}/restore", headers=alice.headers)
        assert answer.status_code == 409, answer.text
        assert answer.json()["type"] == "urn:docstore:problem:unreadable-item"
    assert await TrashedItem.get_pymongo_collection().count_documents({}) == 4


async def test_an_id_in_both_places_is_never_overwritten_nor_half_deleted(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    """Another tool (or a crash on a standalone server) can leave an id both in the trash
    and in the items: a restore is a 409, a move is a 409, a permanent delete takes both."""
    item = await create_item(client, alice, title="alice's")
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    twin = {"_id": ObjectId(item["id"]), "owner_id": bob.user.id, "readers": [bob.user.id]}
    twin |= {"shares": [], "title": "bob's", "version": 1}
    twin |= {"created_at": datetime.now(UTC), "updated_at": datetime.now(UTC)}
    await Item.get_pymongo_collection().insert_one(twin)
    restore = await client.post(f"{at(item)}/restore", headers=alice.headers)
    assert (restore.status_code, restore.json()["type"]) == (409, "urn:docstore:problem:id-taken")
    move = await client.delete(at(item), headers=bob.headers)
    assert (move.status_code, move.json()["type"]) == (409, "urn:docstore:problem:in-trash")
    assert [t["title"] for t in await trash_of(client, alice)] == ["alice's"]  # untouched
    assert (await client.get(at(item), headers=bob.headers)).json()["title"] == "bob's"
    await Item.get_pymongo_collection().update_one(
        {"_id": twin["_id"]}, {"$set": {"owner_id": alice.user.id, "readers": [alice.user.id]}}
    )
    gone = await client.delete(at(item), params={"permanent": "true"}, headers=alice.headers)
    assert gone.status_code == 204
    assert await Item.get_pymongo_collection().count_documents({"_id": twin["_id"]}) == 0
    assert await trash_of(client, alice) == []


async def test_a_superuser_reads_anyones_trash_and_nobody_else_does(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    item = await create_item(client, alice, title="alice's")
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    theirs = {"owner_id": alice.id}
    seen = await client.get(TRASH, params=theirs, headers=admin.headers)
    assert [t["title"] for t in seen.json()["items"]] == ["alice's"]
    assert (await client.get(TRASH, params=theirs, headers=bob.headers)).status_code == 403
    assert (await client.get(TRASH, params=theirs, headers=alice.headers)).status_code == 200


async def test_a_move_or_restore_cut_short_leaves_neither_half(
    failing_server: str, tmp_path: Path
) -> None:
    """A fault on the second write of a move (the delete from items) or of a restore (the
    delete from the trash) aborts the transaction: the item is where it was, once."""
    settings = make_settings(failing_server, tmp_path)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        item = await create_item(client, alice, title="whole")
        database = services_of(app).client
        await fail_next(database, "delete")
        cut = await client.delete(at(item), headers=alice.headers)
        assert cut.status_code >= 500, cut.text  # the database failed the request
        assert (await client.get(at(item), headers=alice.headers)).status_code == 200
        assert await trash_of(client, alice) == []
        assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
        await fail_next(database, "delete")
        cut = await client.post(f"{at(item)}/restore", headers=alice.headers)
        assert cut.status_code >= 500, cut.text
        assert (await client.get(at(item), headers=alice.headers)).status_code == 404
        assert [t["id"] for t in await trash_of(client, alice)] == [item["id"]]

"""Version history: every change kept with who made it, read back and restored by the
owner and editors only, bounded, written with the change or not at all."""

import asyncio
from pathlib import Path
from typing import Any

import httpx2
from bson import ObjectId
from fastapi import FastAPI

from documents import ItemVersion
from tests.conftest import (
    Account,
    app_with,
    create_item,
    fail_next,
    make_account,
    make_settings,
    services_of,
)
from tests.items.test_trash import everything_stored
from tests.live.test_live_sharing import share

ITEMS = "/api/v1/items"


def at(item: dict[str, Any]) -> str:
    return f"{ITEMS}/{item['id']}"


async def history(
    client: httpx2.AsyncClient, account: Account, item: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.get(f"{at(item)}/versions?limit=100", headers=account.headers)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["items"]
    return rows


async def stored_versions(app: FastAPI, item: dict[str, Any]) -> list[dict[str, Any]]:
    found = ItemVersion.get_pymongo_collection().find({"item_id": ObjectId(item["id"])})
    return [doc async for doc in found]


async def test_every_change_is_kept_newest_first_with_who_made_it(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    item = await create_item(client, alice, title="v1", data={"n": 1})
    await share(client, alice, item, "bob", "editor")
    patched = await client.patch(at(item), json={"title": "v2"}, headers=bob.headers)
    assert patched.status_code == 200
    replaced = await client.put(
        at(item), json={"title": "v3", "tags": ["x"]}, headers=alice.headers
    )
    assert replaced.status_code == 200
    batch = {"operations": [{"op": "patch", "id": item["id"], "patch": {"data": {"n": 4}}}]}
    assert (await client.post(f"{ITEMS}/batch", json=batch, headers=bob.headers)).status_code == 200
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    back = await client.post(f"{at(item)}/restore", headers=alice.headers)
    assert back.json()["version"] == 5
    rows = await history(client, bob, item)
    assert [(r["version"], r["change"], r["changed_by"]) for r in rows] == [
        (5, "restored", alice.id),
        (4, "updated", bob.id),
        (3, "replaced", alice.id),
        (2, "updated", bob.id),
        (1, "created", alice.id),
    ]
    assert rows == sorted(rows, key=lambda r: r["changed_at"], reverse=True)
    first = (await client.get(f"{at(item)}/versions/1", headers=alice.headers)).json()
    assert (first["title"], first["data"], first["tags"], first["version"]) == (
        "v1",
        {"n": 1},
        [],
        1,
    )
    assert (first["id"], first["access"], first["change"]) == (item["id"], "owner", "created")
    as_bob = (await client.get(f"{at(item)}/versions/3", headers=bob.headers)).json()
    assert (as_bob["title"], as_bob["tags"], as_bob["access"]) == ("v3", ["x"], "editor")
    # A write that changes nothing keeps no version.
    same = await client.patch(at(item), json={"title": "v3"}, headers=alice.headers)
    assert same.json()["version"] == 5
    assert len(await history(client, alice, item)) == 5


async def test_restoring_a_version_is_a_new_version_and_honours_if_match(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    item = await create_item(client, alice, title="first", description="old", data={"a": 1})
    await client.patch(at(item), json={"title": "second", "data": {"b": 2}}, headers=alice.headers)
    url = f"{at(item)}/versions/1/restore"
    stale = await client.post(url, headers={**alice.headers, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert (await client.get(at(item), headers=alice.headers)).json()["title"] == "second"
    restored = await client.post(url, headers={**alice.headers, "If-Match": '"2"'})
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["title"], body["description"], body["data"], body["version"]) == (
        "first",
        "old",
        {"a": 1},
        3,
    )
    assert restored.headers["ETag"] == '"3"'
    rows = await history(client, alice, item)
    assert (rows[0]["version"], rows[0]["change"]) == (3, "restored")
    again = await client.post(url, headers=alice.headers)  # the content it has already:
    assert again.status_code == 200  # a new version still, as the contract says
    assert again.json()["version"] == 4


async def test_only_the_owner_and_editors_see_history_and_strangers_find_nothing(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    carol = await make_account(app, "carol")
    dave = await make_account(app, "dave")
    item = await create_item(client, alice, title="kept")
    await client.patch(at(item), json={"title": "changed"}, headers=alice.headers)
    await share(client, alice, item, "bob", "viewer")
    await share(client, alice, item, "carol", "editor")
    routes = [
        ("GET", f"{at(item)}/versions"),
        ("GET", f"{at(item)}/versions/1"),
        ("POST", f"{at(item)}/versions/1/restore"),
    ]
    for method, url in routes:
        viewer = await client.request(method, url, headers=bob.headers)
        assert viewer.status_code == 403, (url, viewer.text)
        stranger = await client.request(method, url, headers=dave.headers)
        assert stranger.status_code == 404, (url, stranger.text)
        assert stranger.json()["type"].endswith(":not-found")
        guessed = url.replace(item["id"], str(ObjectId()))
        assert (await client.request(method, guessed, headers=dave.headers)).status_code == 404
    assert (await client.get(at(item), headers=alice.headers)).json()["title"] == "changed"
    for method, url in routes:  # an editor may do all three
        editor = await client.request(method, url, headers=carol.headers)
        assert editor.status_code == 200, (url, editor.text)
    assert (await client.get(at(item), headers=alice.headers)).json()["title"] == "kept"
    unknown = await client.get(f"{at(item)}/versions/99", headers=alice.headers)
    assert unknown.status_code == 404
    assert (await client.get(f"{at(item)}/versions/0", headers=alice.headers)).status_code == 422


async def test_only_the_newest_versions_are_kept(tmp_path: Path, mongodb_url: str) -> None:
    settings = make_settings(mongodb_url, tmp_path, history_max_versions=3)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        item = await create_item(client, alice, title="v1")
        for n in range(2, 10):
            await client.patch(at(item), json={"title": f"v{n}"}, headers=alice.headers)
        assert [r["version"] for r in await history(client, alice, item)] == [9, 8, 7]
        assert len(await stored_versions(app, item)) == 9  # the tenth change trims
        await client.patch(at(item), json={"title": "v10"}, headers=alice.headers)
        rows = await history(client, alice, item)
        assert [r["version"] for r in rows] == [10, 9, 8]
        old = await client.get(f"{at(item)}/versions/7", headers=alice.headers)
        assert old.status_code == 404
        kept = await stored_versions(app, item)
        assert sorted(doc["version"] for doc in kept) == [8, 9, 10]  # no more are stored
        page = await client.get(f"{at(item)}/versions?limit=2", headers=alice.headers)
        rest = await client.get(
            f"{at(item)}/versions",
            params={"limit": 2, "cursor": page.json()["next_cursor"]},
            headers=alice.headers,
        )
        assert [r["version"] for r in rest.json()["items"]] == [8]


async def test_a_change_cut_short_leaves_neither_it_nor_its_version(
    failing_server: str, tmp_path: Path
) -> None:
    """The version is written in the change's transaction: a fault on the history write
    (the only `update` command these make) aborts the change too."""
    settings = make_settings(failing_server, tmp_path)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        item = await create_item(client, alice, title="whole")
        database = services_of(app).client
        await fail_next(database, "update")
        cut = await client.patch(at(item), json={"title": "half"}, headers=alice.headers)
        assert cut.status_code >= 500, cut.text
        now = (await client.get(at(item), headers=alice.headers)).json()
        assert (now["title"], now["version"]) == ("whole", 1)
        assert [doc["version"] for doc in await stored_versions(app, item)] == [1]
        await fail_next(database, "update")
        cut = await client.post(ITEMS, json={"title": "never"}, headers=alice.headers)
        assert cut.status_code >= 500, cut.text
        listed = (await client.get(ITEMS, headers=alice.headers)).json()["items"]
        assert [row["title"] for row in listed] == ["whole"]
        assert await ItemVersion.get_pymongo_collection().count_documents({}) == 1
        # A move to the trash and a restore mark the history as they go: cut short, the
        # item is where it was.
        await fail_next(database, "update")
        cut = await client.delete(at(item), headers=alice.headers)
        assert cut.status_code >= 500, cut.text
        assert (await client.get(at(item), headers=alice.headers)).status_code == 200
        assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
        await fail_next(database, "update")
        cut = await client.post(f"{at(item)}/restore", headers=alice.headers)
        assert cut.status_code >= 500, cut.text
        assert (await client.get(at(item), headers=alice.headers)).status_code == 404
        back = await client.post(f"{at(item)}/restore", headers=alice.headers)
        assert back.json()["version"] == 2
        assert sorted(doc["version"] for doc in await stored_versions(app, item)) == [1, 2]


async def test_restores_racing_patches_lose_no_change(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """Each write is a compare-and-swap that retries on the item as it is then: ten
    patches and five restores at once all land, each as its own version."""
    item = await create_item(client, alice, title="base", data={})
    patches = [
        client.patch(at(item), json={"data": {f"k{n}": n}}, headers=alice.headers)
        for n in range(10)
    ]
    restores = [
        client.post(f"{at(item)}/versions/1/restore", headers=alice.headers) for _ in range(5)
    ]
    answers = await asyncio.gather(*patches, *restores)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    rows = await history(client, alice, item)
    final = (await client.get(at(item), headers=alice.headers)).json()
    assert [r["version"] for r in rows] == list(range(final["version"], 0, -1))  # none missing
    assert sum(r["change"] == "updated" for r in rows) == 10  # every patch is in the history
    for row in rows:
        if row["change"] == "updated":
            kept = await client.get(f"{at(item)}/versions/{row['version']}", headers=alice.headers)
            assert kept.json()["data"], kept.text  # each patch's key, on what it patched
    newest = await client.get(f"{at(item)}/versions/{final['version']}", headers=alice.headers)
    assert newest.json()["data"] == final["data"]


async def test_a_version_another_tool_mangled_is_skipped_or_a_409_never_a_500(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    item = await create_item(client, alice, title="v1")
    await client.patch(at(item), json={"title": "v2"}, headers=alice.headers)
    await client.patch(at(item), json={"title": "v3"}, headers=alice.headers)
    versions = ItemVersion.get_pymongo_collection()
    item_id = ObjectId(item["id"])
    await versions.update_one(
        {"item_id": item_id, "version": 1}, {"$set": {"title": 7, "change": "bogus"}}
    )
    await versions.update_one({"item_id": item_id, "version": 2}, {"$set": {"data": [1]}})
    await versions.insert_one({"_id": "odd", "item_id": item_id, "version": "3"})
    rows = await history(client, alice, item)
    assert [r["version"] for r in rows] == [3, 2]  # 1 cannot be shown; "3" is no version
    for version in (1, 2):
        one = await client.get(f"{at(item)}/versions/{version}", headers=alice.headers)
        assert one.status_code == 409, one.text
        restore = await client.post(f"{at(item)}/versions/{version}/restore", headers=alice.headers)
        assert restore.status_code == 409, restore.text
    assert (await client.get(at(item), headers=alice.headers)).json()["title"] == "v3"


async def test_history_goes_with_the_trash_and_the_account(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    indexes = await ItemVersion.get_pymongo_collection().index_information()
    assert [i["expireAfterSeconds"] for i in indexes.values() if i["key"] == [("purge_at", 1)]] == [
        0
    ]
    marker = "unrepeatable-history-5c1e"
    item = await create_item(client, alice, title="kept", data={"note": marker})
    await client.patch(at(item), json={"title": "changed"}, headers=alice.headers)
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    trashed = await client.get(f"{ITEMS}/trash", headers=alice.headers)
    purge_at = trashed.json()["items"][0]["purge_at"]
    kept = await stored_versions(app, item)
    assert len(kept) == 2
    assert all(doc["purge_at"].isoformat()[:19] == purge_at[:19] for doc in kept)  # TTL
    assert (await client.post(f"{at(item)}/restore", headers=alice.headers)).status_code == 200
    kept = await stored_versions(app, item)
    assert [("purge_at" in doc) for doc in kept] == [False, False, False]
    bye = await client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers)
    assert bye.status_code == 204, bye.text
    assert await stored_versions(app, item) == []
    assert marker.encode() not in await everything_stored(app)  # as another tool reads it


async def test_history_is_the_items_own_whatever_another_tool_wrote(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    """An item another tool wrote with a trashed item's id (and another owner) shows
    none of the trashed item's versions; a version stored as a double still counts."""
    item = await create_item(client, alice, title="alice's secret")
    await client.patch(at(item), json={"description": "more secret"}, headers=alice.headers)
    assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
    items = services_of(app).client[services_of(app).settings.mongodb_db]["items"]
    made = await create_item(client, bob, title="bob's")
    raw = await items.find_one({"_id": ObjectId(made["id"])})
    assert raw is not None
    await items.insert_one({**raw, "_id": ObjectId(item["id"]), "version": 2})
    squatter = await client.get(f"{at(item)}/versions", headers=bob.headers)
    assert squatter.status_code == 200
    assert squatter.json()["items"] == []
    assert "secret" not in (await client.get(f"{at(item)}/versions/2", headers=bob.headers)).text
    await items.update_one({"_id": ObjectId(made["id"])}, {"$set": {"version": 1.0}})
    patched = await client.patch(at(made), json={"title": "bob's 2"}, headers=bob.headers)
    assert patched.json()["version"] == 2
    after = await items.find_one({"_id": ObjectId(made["id"])})
    assert after is not None
    assert type(after["version"]) is int
    assert [r["version"] for r in await history(client, bob, made)] == [2, 1]

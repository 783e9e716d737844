"""Sharing over HTTP: who may do what with an item shared with viewers and editors."""

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import pytest
from bson import ObjectId
from fastapi import FastAPI

from api.main import create_app
from documents import Item, User
from tests.accounts.test_access_tokens import bearer, make_token
from tests.conftest import Account, app_with, create_item, make_account, make_settings, walk_pages

ITEMS = "/api/v1/items"
BATCH = "/api/v1/items/batch"


def shares_of(item: dict[str, Any]) -> str:
    return f"{ITEMS}/{item['id']}/shares"


async def share(
    client: httpx2.AsyncClient, owner: Account, item: dict[str, Any], user: str, role: str
) -> httpx2.Response:
    return await client.post(
        shares_of(item), json={"user": user, "role": role}, headers=owner.headers
    )


async def stored(item: dict[str, Any]) -> dict[str, Any]:
    doc = await Item.get_pymongo_collection().find_one({"_id": ObjectId(item["id"])})
    assert doc is not None
    return doc


@pytest.fixture
async def carol(app: FastAPI) -> Account:
    return await make_account(app, "carol")


async def test_an_owner_shares_by_username_email_or_id_and_sets_the_role(
    client: httpx2.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    item = await create_item(client, alice, title="plans")
    first = await share(client, alice, item, "bob", "viewer")
    assert first.status_code == 201, first.text
    assert set(first.json()) == {"user_id", "username", "role", "created_at", "updated_at"}
    assert first.json() | {"created_at": None, "updated_at": None} == {
        "user_id": bob.id, "username": "bob", "role": "viewer",
        "created_at": None, "updated_at": None,
    }  # fmt: skip
    again = await share(client, alice, item, "BOB@example.com", "editor")
    assert again.status_code == 200
    assert again.json()["role"] == "editor"
    assert again.json()["created_at"] == first.json()["created_at"]
    by_id = await share(client, alice, item, carol.id, "viewer")
    assert by_id.status_code == 201
    listed = await client.get(shares_of(item), headers=bob.headers)
    assert listed.status_code == 200
    assert [(s["username"], s["role"]) for s in listed.json()["items"]] == [
        ("bob", "editor"),
        ("carol", "viewer"),
    ]
    doc = await stored(item)
    assert doc["readers"] == [alice.user.id, bob.user.id, carol.user.id]


async def test_each_relation_shows_as_access_on_every_path(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    item = await create_item(client, alice, title="shared")
    await share(client, alice, item, "bob", "editor")
    read = await client.get(f"{ITEMS}/{item['id']}", headers=bob.headers)
    assert read.json()["access"] == "editor"
    assert (await client.get(f"{ITEMS}/{item['id']}", headers=alice.headers)).json()[
        "access"
    ] == "owner"
    assert (await client.get(f"{ITEMS}/{item['id']}", headers=admin.headers)).json()[
        "access"
    ] == "admin"
    patched = await client.patch(f"{ITEMS}/{item['id']}", json={"title": "b"}, headers=bob.headers)
    assert patched.status_code == 200
    assert patched.json()["access"] == "editor"
    batch = await client.post(
        BATCH,
        json={"operations": [{"op": "patch", "id": item["id"], "patch": {"title": "c"}}]},
        headers=bob.headers,
    )
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"][0]["item"]["access"] == "editor"
    listed = (await client.get(ITEMS, headers=bob.headers)).json()["items"]
    assert [(row["title"], row["access"]) for row in listed] == [("c", "editor")]
    picked = (await client.get(ITEMS, params={"fields": "title"}, headers=bob.headers)).json()
    assert picked["items"] == [{"id": item["id"], "title": "c"}]
    with_access = await client.get(ITEMS, params={"fields": "access"}, headers=bob.headers)
    assert with_access.json()["items"] == [{"id": item["id"], "access": "editor"}]


async def test_a_list_runs_over_own_and_shared_items_with_every_filter(
    client: httpx2.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    mine = [await create_item(client, bob, title=f"bob {n}", tags=["x"]) for n in range(3)]
    for n in range(4):
        item = await create_item(client, alice, title=f"alice {n}", tags=["x"] if n % 2 else [])
        await share(client, alice, item, "bob", "viewer" if n < 2 else "editor")
    await create_item(client, carol, title="carol's own")  # never bob's
    rows = await walk_pages(client, ITEMS, bob.headers, limit=2, sort="title")
    expected = [*(f"alice {n}" for n in range(4)), *(f"bob {n}" for n in range(3))]
    assert [row["title"] for row in rows] == expected
    tagged = await walk_pages(client, ITEMS, bob.headers, limit=2, tag="x", sort="title")
    assert [row["title"] for row in tagged] == ["alice 1", "alice 3", "bob 0", "bob 1", "bob 2"]
    found = await client.get(ITEMS, params={"q": "alice"}, headers=bob.headers)
    assert len(found.json()["items"]) == 4
    where = await client.get(
        ITEMS, params={"where": '{"title": {"$in": ["alice 3", "bob 1", "carol\'s own"]}}'},
        headers=bob.headers,
    )  # fmt: skip
    assert sorted(row["title"] for row in where.json()["items"]) == ["alice 3", "bob 1"]

    async def titles(*access: str) -> list[str]:
        rows = await walk_pages(client, ITEMS, bob.headers, 2, sort="title", access=list(access))
        return [row["title"] for row in rows]

    assert await titles("owner") == [item["title"] for item in mine]
    assert await titles("viewer") == ["alice 0", "alice 1"]
    assert await titles("editor") == ["alice 2", "alice 3"]
    assert await titles("editor", "owner") == ["alice 2", "alice 3", "bob 0", "bob 1", "bob 2"]
    bad = await client.get(ITEMS, params={"access": "admin"}, headers=bob.headers)
    assert bad.status_code == 422


async def test_a_viewer_changes_nothing_anywhere(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    item = await create_item(client, alice, title="read only", data={"n": 1})
    await share(client, alice, item, "bob", "viewer")
    url = f"{ITEMS}/{item['id']}"
    before = await stored(item)
    attempts = [
        await client.patch(url, json={"title": "x"}, headers=bob.headers),
        await client.put(url, json={"title": "x"}, headers=bob.headers),
        await client.delete(url, headers=bob.headers),
        await share(client, bob, item, "bob", "editor"),
        await client.delete(f"{shares_of(item)}/{alice.id}", headers=bob.headers),
    ]
    for op in (
        {"op": "patch", "id": item["id"], "patch": {"title": "x"}},
        {"op": "replace", "id": item["id"], "item": {"title": "x"}},
        {"op": "delete", "id": item["id"]},
    ):
        batch = [{"op": "create", "item": {"title": "bob's new"}}, op]
        attempts.append(await client.post(BATCH, json={"operations": batch}, headers=bob.headers))
    assert [response.status_code for response in attempts] == [403] * 8
    assert [r.json()["operation"] for r in attempts[5:]] == [1, 1, 1]
    assert await stored(item) == before
    assert await Item.get_pymongo_collection().count_documents({"title": "bob's new"}) == 0


async def test_an_editor_edits_but_neither_deletes_nor_shares(
    client: httpx2.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    item = await create_item(client, alice, title="draft")
    await share(client, alice, item, "bob", "editor")
    await share(client, alice, item, "carol", "viewer")
    url = f"{ITEMS}/{item['id']}"
    assert (await client.put(url, json={"title": "v2"}, headers=bob.headers)).status_code == 200
    assert (await client.delete(url, headers=bob.headers)).status_code == 403
    batch = {"operations": [{"op": "delete", "id": item["id"]}]}
    assert (await client.post(BATCH, json=batch, headers=bob.headers)).status_code == 403
    assert (await share(client, bob, item, "carol", "editor")).status_code == 403
    ended = await client.delete(f"{shares_of(item)}/{carol.id}", headers=bob.headers)
    assert ended.status_code == 403
    shares = (await client.get(shares_of(item), headers=alice.headers)).json()["items"]
    assert [(s["username"], s["role"]) for s in shares] == [("bob", "editor"), ("carol", "viewer")]
    assert (await client.get(url, headers=alice.headers)).json()["title"] == "v2"


async def test_a_sharee_leaves_and_the_owner_ends_shares(
    client: httpx2.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    item = await create_item(client, alice)
    await share(client, alice, item, "bob", "viewer")
    await share(client, alice, item, "carol", "editor")
    left = await client.delete(f"{shares_of(item)}/{bob.id}", headers=bob.headers)
    assert left.status_code == 204
    assert (await client.get(f"{ITEMS}/{item['id']}", headers=bob.headers)).status_code == 404
    ended = await client.delete(f"{shares_of(item)}/{carol.id}", headers=alice.headers)
    assert ended.status_code == 204
    again = await client.delete(f"{shares_of(item)}/{carol.id}", headers=alice.headers)
    assert again.status_code == 404
    assert again.json()["detail"] == "Share not found."
    assert (await stored(item))["readers"] == [alice.user.id]
    assert (await client.get(ITEMS, headers=carol.headers)).json()["items"] == []


async def test_a_stranger_learns_nothing_on_any_sharing_route(
    client: httpx2.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    """404 with the item's own message on every route, for a real id and a made-up
    one alike: never a 403, never a share list."""
    item = await create_item(client, alice)
    await share(client, alice, item, "bob", "viewer")
    for target in (item, {"id": str(ObjectId())}):
        answers = [
            await share(client, carol, target, "carol", "viewer"),
            await share(client, carol, target, "nobody-at-all", "viewer"),
            await client.get(shares_of(target), headers=carol.headers),
            await client.delete(f"{shares_of(target)}/{bob.id}", headers=carol.headers),
            await client.delete(f"{shares_of(target)}/{carol.id}", headers=carol.headers),
        ]
        assert [a.status_code for a in answers] == [404] * 5
        assert {a.json()["detail"] for a in answers} == {"Item not found."}
    listed = (await client.get(shares_of(item), headers=bob.headers)).json()["items"]
    assert [s["username"] for s in listed] == ["bob"]


async def test_who_an_item_can_be_shared_with(
    client: httpx2.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    item = await create_item(client, alice)
    assert (await share(client, alice, item, "nobody", "viewer")).status_code == 404
    assert (await share(client, alice, item, str(ObjectId()), "viewer")).status_code == 404
    await User.get_pymongo_collection().update_one(
        {"_id": bob.user.id}, {"$set": {"is_active": False}}
    )
    assert (await share(client, alice, item, "bob", "viewer")).status_code == 404
    itself = await share(client, alice, item, "alice", "editor")
    assert itself.status_code == 422
    assert itself.json()["type"].endswith(":owner-not-sharee")
    odd = await client.post(
        shares_of(item), json={"user": "bob", "role": "owner"}, headers=alice.headers
    )
    assert odd.status_code == 422
    assert (await stored(item))["readers"] == [alice.user.id]


async def test_an_item_holds_at_most_its_shares(mongodb_url: str, tmp_path: Path) -> None:
    settings = make_settings(mongodb_url, tmp_path, shares_max_per_item=2)
    async with app_with(settings) as (app, client):
        owner = await make_account(app, "owner")
        for name in ("one", "two", "three"):
            await make_account(app, name)
        item = await create_item(client, owner)
        answers = [await share(client, owner, item, n, "viewer") for n in ("one", "two", "three")]
        assert [a.status_code for a in answers] == [201, 201, 409]
        assert answers[2].json()["type"].endswith(":too-many-shares")
        assert (await share(client, owner, item, "two", "editor")).status_code == 200


async def test_a_burst_of_share_changes_leaves_shares_and_readers_in_agreement(
    client: httpx2.AsyncClient, app: FastAPI, alice: Account
) -> None:
    """40 at once: 32 shares of 8 users (4 each, roles mixed) and 8 unshares of 2 users
    shared before. No change answered as done is lost, and the lists agree."""
    people = [await make_account(app, f"user{n}") for n in range(10)]
    item = await create_item(client, alice)
    leaving = people[8:]
    for person in leaving:
        await share(client, alice, item, person.user.username, "viewer")

    async def change(n: int) -> int:
        if n >= 32:
            url = f"{shares_of(item)}/{leaving[n % 2].id}"
            return (await client.delete(url, headers=alice.headers)).status_code
        role = "viewer" if n % 2 else "editor"
        return (await share(client, alice, item, people[n % 8].user.username, role)).status_code

    statuses = await asyncio.gather(*(change(n) for n in range(40)))
    assert sorted(statuses[32:]) == [204, 204, 404, 404, 404, 404, 404, 404]
    assert set(statuses[:32]) <= {200, 201}
    assert statuses[:32].count(201) == 8  # each user's first share, once
    doc = await stored(item)
    sharees = [s["user_id"] for s in doc["shares"]]
    assert sorted(sharees) == sorted(person.user.id for person in people[:8])
    assert doc["readers"] == [alice.user.id, *sharees]
    listed = (await client.get(shares_of(item), headers=alice.headers)).json()["items"]
    assert [ObjectId(s["user_id"]) for s in listed] == sharees


@pytest.mark.parametrize(
    "mangled",
    [
        {"shares": "oops", "readers": 5},
        {"shares": [{"user_id": "not an id", "role": "editor"}, 7], "readers": ["x"]},
        {"shares": [{"role": "editor"}]},
        {"access": "owner", "acl_version": "x"},
    ],
)
async def test_an_item_whose_shares_another_tool_mangled_stays_its_owners(
    client: httpx2.AsyncClient, alice: Account, bob: Account, mangled: dict[str, Any]
) -> None:
    item = await create_item(client, alice, title="mangled")
    await share(client, alice, item, "bob", "editor")
    await Item.get_pymongo_collection().update_one({"_id": ObjectId(item["id"])}, {"$set": mangled})
    read = await client.get(f"{ITEMS}/{item['id']}", headers=alice.headers)
    assert read.status_code == 200
    assert read.json()["access"] == "owner"
    assert (await client.get(shares_of(item), headers=alice.headers)).status_code == 200
    assert (await client.get(ITEMS, headers=alice.headers)).status_code == 200
    assert (await client.get(f"{ITEMS}/{item['id']}", headers=bob.headers)).status_code in (
        200,
        404,
    )
    repaired = await share(client, alice, item, "bob", "viewer")
    assert repaired.status_code in (200, 201)
    doc = await stored(item)
    assert doc["readers"] == [alice.user.id, bob.user.id]
    assert [s["user_id"] for s in doc["shares"]] == [bob.user.id]
    bob_reads = await client.get(f"{ITEMS}/{item['id']}", headers=bob.headers)
    assert bob_reads.json()["access"] == "viewer"


async def test_personal_tokens_read_write_and_share_within_their_scopes(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    item = await create_item(client, alice)
    await share(client, alice, item, "bob", "editor")
    reader = bearer(await make_token(client, bob, ["items:read"]))
    writer = bearer(await make_token(client, bob, ["items:write"]))
    url = f"{ITEMS}/{item['id']}"
    assert (await client.get(url, headers=reader)).json()["access"] == "editor"
    assert (await client.patch(url, json={"title": "t"}, headers=reader)).status_code == 403
    assert (await client.patch(url, json={"title": "t"}, headers=writer)).status_code == 200
    owner_writer = bearer(await make_token(client, alice, ["items:write", "items:read"]))
    sharer = bearer(await make_token(client, alice, ["items:share"]))
    body = {"user": "bob", "role": "viewer"}
    assert (await client.post(shares_of(item), json=body, headers=owner_writer)).status_code == 403
    assert (await client.post(shares_of(item), json=body, headers=sharer)).status_code == 200
    assert (await client.patch(url, json={"title": "u"}, headers=writer)).status_code == 403


async def test_a_revoked_sharee_keeps_nothing(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    """A personal token, an idempotency key used before the revoke: neither shows the
    item once the share has ended."""
    item = await create_item(client, alice, title="secret plan")
    await share(client, alice, item, "bob", "editor")
    token = bearer(await make_token(client, bob, ["items:read", "items:write"]))
    batch = {"operations": [{"op": "patch", "id": item["id"], "patch": {"title": "our plan"}}]}
    key = {"Idempotency-Key": "bob-1"}
    first = await client.post(BATCH, json=batch, headers={**bob.headers, **key})
    assert first.status_code == 200
    replay = await client.post(BATCH, json=batch, headers={**bob.headers, **key})
    assert replay.headers.get("idempotent-replayed") == "true"
    ended = await client.delete(f"{shares_of(item)}/{bob.id}", headers=alice.headers)
    assert ended.status_code == 204
    withheld = await client.post(BATCH, json=batch, headers={**bob.headers, **key})
    assert withheld.status_code == 410
    assert "our plan" not in withheld.text
    for headers in (token, bob.headers):
        assert (await client.get(f"{ITEMS}/{item['id']}", headers=headers)).status_code == 404
        assert (await client.get(ITEMS, headers=headers)).json()["items"] == []
    assert (await stored(item))["title"] == "our plan"  # written once, before the revoke


async def test_deleting_accounts_ends_their_shares_and_items(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    mine = await create_item(client, alice, title="alice's")
    theirs = await create_item(client, bob, title="bob's")
    await share(client, alice, mine, "bob", "viewer")
    await share(client, bob, theirs, "alice", "editor")
    gone = await client.delete(f"/api/v1/users/{bob.id}", headers=admin.headers)
    assert gone.status_code == 204
    assert (await stored(mine))["readers"] == [alice.user.id]
    assert (await stored(mine))["shares"] == []
    assert await Item.get_pymongo_collection().count_documents({"owner_id": bob.user.id}) == 0
    rows = (await client.get(ITEMS, headers=alice.headers)).json()["items"]
    assert [row["title"] for row in rows] == ["alice's"]


async def test_a_superuser_manages_anyones_shares(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    item = await create_item(client, alice)
    made = await share(client, admin, item, "bob", "viewer")
    assert made.status_code == 201
    assert (await client.get(f"{ITEMS}/{item['id']}", headers=bob.headers)).status_code == 200
    ended = await client.delete(f"{shares_of(item)}/{bob.id}", headers=admin.headers)
    assert ended.status_code == 204


async def test_items_stored_before_sharing_get_their_owner_as_reader(
    mongodb_url: str, tmp_path: Path
) -> None:
    settings = make_settings(mongodb_url, tmp_path)
    async with app_with(settings) as (app, client):
        owner = await make_account(app, "early")
        item = await create_item(client, owner, title="from before")
        await Item.get_pymongo_collection().update_one(
            {"_id": ObjectId(item["id"])}, {"$unset": {"readers": "", "shares": ""}}
        )
        assert (await client.get(ITEMS, headers=owner.headers)).json()["items"] == []
        restarted = create_app(settings)  # a restart: its lifespan mends them
        async with restarted.router.lifespan_context(restarted):
            listed = (await client.get(ITEMS, headers=owner.headers)).json()["items"]
        assert [row["title"] for row in listed] == ["from before"]


async def test_a_share_ended_between_read_and_write_refuses_the_write(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    """The write's own filter carries the caller's access: an editor's patch that read
    the item before its share ended does not land after."""
    from api.core.errors import DomainError
    from api.items.deps import find_writable
    from api.items.history import Change, within
    from api.items.writes import patched, write_content
    from documents import ItemMergePatch

    item = await create_item(client, alice, title="before")
    await share(client, alice, item, "bob", "editor")
    read_before = await find_writable(ObjectId(item["id"]), bob.user)
    ended = await client.delete(f"{shares_of(item)}/{bob.id}", headers=alice.headers)
    assert ended.status_code == 204
    patch = ItemMergePatch(title="after")
    change = Change("updated", bob.user.id, 100)
    with pytest.raises(DomainError) as refused:
        await write_content(
            read_before, bob.user, lambda now: patched(now, patch), None, change, within(None)
        )
    assert refused.value.status == 404
    assert (await stored(item))["title"] == "before"

"""/items: create, read, partial update, delete, list; always scoped to the owner."""

from datetime import timedelta
from typing import Any

import httpx2
import pytest
from beanie import PydanticObjectId

from documents import Item
from documents.base import utcnow
from tests.conftest import Account, create_item, moment, walk_pages

ITEMS = "/api/v1/items"


async def test_create_and_read(client: httpx2.AsyncClient, alice: Account) -> None:
    response = await client.post(
        ITEMS,
        json={
            "title": "  Trip  ",
            "description": "Packing list",
            "tags": ["Travel", "travel", "TODO"],
            "data": {"days": 3, "nested": {"ok": True}},
        },
        headers=alice.headers,
    )
    assert response.status_code == 201
    item = response.json()
    assert response.headers["location"] == f"{ITEMS}/{item['id']}"
    assert item["owner_id"] == alice.id
    assert item["title"] == "Trip"
    assert item["tags"] == ["travel", "todo"]
    assert item["data"] == {"days": 3, "nested": {"ok": True}}
    assert item["version"] == 1
    assert item["created_at"] == item["updated_at"]
    assert item["created_at"].endswith("Z")
    assert set(item) == {
        "id",
        "owner_id",
        "title",
        "description",
        "tags",
        "data",
        "created_at",
        "updated_at",
        "version",
        "access",
    }
    assert item["access"] == "owner"
    read = await client.get(response.headers["location"], headers=alice.headers)
    assert read.status_code == 200
    assert read.json() == item


async def test_someone_elses_item_is_404(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    item = await create_item(client, alice)
    url = f"{ITEMS}/{item['id']}"
    assert (await client.get(url, headers=bob.headers)).status_code == 404
    assert (await client.patch(url, json={"title": "x"}, headers=bob.headers)).status_code == 404
    assert (await client.delete(url, headers=bob.headers)).status_code == 404
    stored = await Item.get(item["id"])
    assert stored is not None
    assert stored.title == "note"


async def test_superuser_sees_and_changes_all(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    item = await create_item(client, alice)
    url = f"{ITEMS}/{item['id']}"
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    patched = await client.patch(url, json={"title": "moderated"}, headers=admin.headers)
    assert patched.json()["owner_id"] == alice.id


async def test_items_need_authentication(client: httpx2.AsyncClient, alice: Account) -> None:
    item = await create_item(client, alice)
    for method, url in (
        ("GET", ITEMS),
        ("POST", ITEMS),
        ("GET", f"{ITEMS}/{item['id']}"),
        ("PATCH", f"{ITEMS}/{item['id']}"),
        ("DELETE", f"{ITEMS}/{item['id']}"),
    ):
        response = await client.request(method, url, json={})
        assert response.status_code == 401, (method, url)
        assert response.headers["www-authenticate"] == "Bearer"


async def test_partial_update(client: httpx2.AsyncClient, alice: Account) -> None:
    item = await create_item(client, alice, description="d", tags=["a"], data={"k": 1})
    earlier = utcnow() - timedelta(hours=1)  # so a change that bumps nothing shows
    stored = {"_id": PydanticObjectId(item["id"])}
    await Item.get_pymongo_collection().update_one(stored, {"$set": {"updated_at": earlier}})
    url = f"{ITEMS}/{item['id']}"
    response = await client.patch(
        url, json={"data": {"k": 2}, "tags": ["B"]}, headers=alice.headers
    )
    assert response.status_code == 200
    patched = response.json()
    assert (patched["title"], patched["description"]) == ("note", "d")
    assert patched["tags"] == ["b"]
    assert patched["data"] == {"k": 2}
    assert patched["version"] == 2
    assert moment(patched["updated_at"]) > earlier
    assert patched["created_at"] == item["created_at"]
    cleared = await client.patch(url, json={"description": None}, headers=alice.headers)
    assert cleared.json()["description"] is None
    assert cleared.json()["version"] == 3
    unchanged = await client.patch(url, json={}, headers=alice.headers)
    assert unchanged.json()["version"] == 3


@pytest.mark.parametrize(
    "patch",
    [
        {"title": None},
        {"title": ""},
        {"tags": ["x" * 51]},
        {"data": {"$set": 1}},
        {"data": {"a": {"b.c": 1}}},
        {"data": "not an object"},
        {"unknown": 1},
        {"owner_id": "x"},
        {"version": 9},
        {"id": "0123456789abcdef01234567"},
        {"created_at": "2020-01-01T00:00:00Z"},
    ],
)
async def test_bad_patches_are_422_and_change_nothing(
    client: httpx2.AsyncClient, alice: Account, patch: dict[str, Any]
) -> None:
    item = await create_item(client, alice)
    response = await client.patch(f"{ITEMS}/{item['id']}", json=patch, headers=alice.headers)
    assert response.status_code == 422
    assert (await client.get(f"{ITEMS}/{item['id']}", headers=alice.headers)).json() == item


async def test_delete(client: httpx2.AsyncClient, alice: Account) -> None:
    item = await create_item(client, alice)
    url = f"{ITEMS}/{item['id']}"
    response = await client.delete(url, headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(url, headers=alice.headers)).status_code == 404
    assert (await client.delete(url, headers=alice.headers)).status_code == 404


async def test_list_is_newest_first_and_scoped(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    titles = [f"a{i}" for i in range(5)]
    for title in titles:
        await create_item(client, alice, title=title)
    await create_item(client, bob, title="bob's")
    mine = (await client.get(ITEMS, headers=alice.headers)).json()
    assert [i["title"] for i in mine["items"]] == titles[::-1]
    assert mine["next_cursor"] is None
    assert "total" not in mine
    everyone = (
        await client.get(ITEMS, params={"include_total": True}, headers=admin.headers)
    ).json()
    assert everyone["total"] == 6
    only_bob = await client.get(ITEMS, params={"owner_id": bob.id}, headers=admin.headers)
    assert [i["title"] for i in only_bob.json()["items"]] == ["bob's"]
    snooping = await client.get(ITEMS, params={"owner_id": bob.id}, headers=alice.headers)
    assert snooping.status_code == 403
    own_filter = await client.get(ITEMS, params={"owner_id": alice.id}, headers=alice.headers)
    assert len(own_filter.json()["items"]) == 5


async def test_list_pages_by_cursor_and_skip(client: httpx2.AsyncClient, alice: Account) -> None:
    for i in range(7):
        await create_item(client, alice, title=f"t{i}")
    rows = await walk_pages(client, ITEMS, alice.headers, limit=3)
    assert [i["title"] for i in rows] == [f"t{i}" for i in range(6, -1, -1)]
    skipped = await client.get(ITEMS, params={"skip": 5, "limit": 10}, headers=alice.headers)
    assert [i["title"] for i in skipped.json()["items"]] == ["t1", "t0"]


async def test_cursor_cannot_be_forged_or_reused_across_lists(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    for _ in range(3):
        await create_item(client, alice)
    cursor = (await client.get(ITEMS, params={"limit": 1}, headers=alice.headers)).json()[
        "next_cursor"
    ]
    payload, signature = cursor.split(".")
    for bad in ("garbage", payload + ".AAAA", payload[:-2] + "." + signature, "x" * 600):
        response = await client.get(ITEMS, params={"cursor": bad}, headers=alice.headers)
        assert response.status_code in (400, 422), bad
        assert response.headers["content-type"] == "application/problem+json"
    user_list_cursor = await client.get(
        "/api/v1/users", params={"cursor": cursor}, headers=admin.headers
    )
    assert user_list_cursor.status_code == 400


@pytest.mark.parametrize("limit", [0, 101, -1, "many"])
async def test_limit_bounds(client: httpx2.AsyncClient, alice: Account, limit: Any) -> None:
    response = await client.get(ITEMS, params={"limit": limit}, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "limit"]

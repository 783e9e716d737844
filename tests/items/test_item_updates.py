"""Conditional requests (ETag, 304, 412), JSON Merge Patch, PUT, and lossless concurrency."""

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from bson import ObjectId
from fastapi import FastAPI
from pymongo import MongoClient

from api.core import retry
from api.items import writes
from documents import Item
from tests.conftest import Account, create_item, services_of

ITEMS = "/api/v1/items"
MERGE = {"content-type": "application/merge-patch+json"}


@pytest.fixture
async def item(client: httpx2.AsyncClient, alice: Account) -> dict[str, Any]:
    response = await client.post(
        ITEMS,
        json={
            "title": "Trip",
            "description": "d",
            "tags": ["a"],
            "data": {"days": 3, "hotel": {"name": "H", "stars": 4}, "keep": True},
        },
        headers=alice.headers,
    )
    assert response.headers["etag"] == '"1"'
    body: dict[str, Any] = response.json()
    return body


async def test_etag_and_if_none_match(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any]
) -> None:
    url = f"{ITEMS}/{item['id']}"
    read = await client.get(url, headers=alice.headers)
    assert read.headers["etag"] == '"1"'
    for header in ('"1"', 'W/"1"', '"7", "1"', "*"):
        cached = await client.get(url, headers={**alice.headers, "If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.content == b""
        assert cached.headers["etag"] == '"1"'
    stale = await client.get(url, headers={**alice.headers, "If-None-Match": '"0"'})
    assert stale.status_code == 200


async def test_if_match_on_patch_put_delete(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any]
) -> None:
    url = f"{ITEMS}/{item['id']}"
    stale = {**alice.headers, "If-Match": '"0"'}
    for method, body in (("PATCH", {"title": "x"}), ("PUT", {"title": "x"}), ("DELETE", None)):
        response = await client.request(method, url, json=body, headers=stale)
        assert response.status_code == 412, method
        assert response.headers["content-type"] == "application/problem+json"
    assert (await Item.get(item["id"])).version == 1  # type: ignore[union-attr]
    fresh = await client.patch(
        url, json={"title": "y"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == '"2"'
    gone = await client.delete(url, headers={**alice.headers, "If-Match": '"2"'})
    assert gone.status_code == 204
    assert (await client.delete(url, headers={**alice.headers, "If-Match": "*"})).status_code == 404


async def test_merge_patch_semantics(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any]
) -> None:
    url = f"{ITEMS}/{item['id']}"
    patch = {
        "data": {"days": 5, "hotel": {"stars": None, "pool": True}, "new": [1, 2]},
        "description": None,
    }
    response = await client.patch(url, json=patch, headers={**alice.headers, **MERGE})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == {
        "days": 5,
        "hotel": {"name": "H", "pool": True},
        "keep": True,
        "new": [1, 2],
    }
    assert body["description"] is None
    assert (body["title"], body["tags"], body["version"]) == ("Trip", ["a"], 2)
    assert body["created_at"] == item["created_at"]
    cleared = await client.patch(url, json={"tags": None, "data": None}, headers=alice.headers)
    assert (cleared.json()["tags"], cleared.json()["data"]) == ([], {})


@pytest.mark.parametrize("field", ["id", "owner_id", "created_at", "updated_at", "version"])
async def test_read_only_fields(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any], field: str
) -> None:
    response = await client.patch(
        f"{ITEMS}/{item['id']}", json={field: item[field]}, headers=alice.headers
    )
    assert response.status_code == 422
    assert f"{field} is read-only" in response.json()["detail"]


async def test_merged_result_must_stay_within_limits(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any]
) -> None:
    url = f"{ITEMS}/{item['id']}"
    deep: dict[str, Any] = {"k": 1}
    for _ in range(9):
        deep = {"k": deep}
    for patch in ({"data": {"hotel": deep}}, {"data": {"big": "x" * 70_000}}):
        response = await client.patch(url, json=patch, headers=alice.headers)
        assert response.status_code in (413, 422)
    assert (await Item.get(item["id"])).version == 1  # type: ignore[union-attr]


async def test_put_replaces_content_and_keeps_identity(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any]
) -> None:
    url = f"{ITEMS}/{item['id']}"
    response = await client.put(url, json={"title": "New"}, headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["title"], body["description"], body["tags"], body["data"]) == ("New", None, [], {})
    assert (body["id"], body["owner_id"], body["created_at"]) == (
        item["id"],
        item["owner_id"],
        item["created_at"],
    )
    assert body["version"] == 2
    bad = await client.put(url, json={"title": "x", "version": 9}, headers=alice.headers)
    assert bad.status_code == 422


async def test_concurrent_if_match_writers_lose_nothing(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any]
) -> None:
    url = f"{ITEMS}/{item['id']}"
    conflicts = 0

    async def add_key(n: int) -> None:
        nonlocal conflicts
        while True:
            current = await client.get(url, headers=alice.headers)
            headers = {**alice.headers, "If-Match": current.headers["etag"]}
            response = await client.patch(url, json={"data": {f"k{n}": n}}, headers=headers)
            if response.status_code == 200:
                return
            assert response.status_code == 412
            conflicts += 1

    await asyncio.gather(*(add_key(n) for n in range(12)))
    final = (await client.get(url, headers=alice.headers)).json()
    assert {f"k{n}" for n in range(12)} <= final["data"].keys()
    assert final["version"] == 13
    assert conflicts > 0  # they really did race


async def test_concurrent_plain_patches_lose_nothing(
    client: httpx2.AsyncClient, alice: Account, item: dict[str, Any]
) -> None:
    url = f"{ITEMS}/{item['id']}"
    responses = await asyncio.gather(
        *(client.patch(url, json={"data": {f"p{n}": n}}, headers=alice.headers) for n in range(12))
    )
    assert all(response.status_code == 200 for response in responses)
    final = (await client.get(url, headers=alice.headers)).json()
    assert {f"p{n}" for n in range(12)} <= final["data"].keys()
    assert final["version"] == 13


async def test_if_match_star_matches_the_item_whatever_its_version(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """RFC 9110: `*` matches any current representation, so concurrent writes with it
    all land (none is a 412); on an item that is gone it is still a 404."""
    created = await create_item(client, alice)
    url = f"{ITEMS}/{created['id']}"
    headers = {**alice.headers, "If-Match": "*"}
    patches = await asyncio.gather(
        *(client.patch(url, json={"data": {f"k{n}": n}}, headers=headers) for n in range(10))
    )
    assert [response.status_code for response in patches] == [200] * 10
    stored = (await client.get(url, headers=alice.headers)).json()
    assert stored["version"] == 11
    assert stored["data"] == {f"k{n}": n for n in range(10)}


async def test_a_change_of_type_alone_is_written(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """`true == 1` in Python: a patch from 1 to true must still be a new version."""
    created = await create_item(client, alice, data={"ok": 1})
    url = f"{ITEMS}/{created['id']}"
    patched = await client.patch(url, json={"data": {"ok": True}}, headers=alice.headers)
    assert (patched.json()["data"], patched.json()["version"]) == ({"ok": True}, 2)


async def test_a_write_that_keeps_losing_the_race_is_a_409_after_its_budget(
    app: FastAPI,
    client: httpx2.AsyncClient,
    alice: Account,
    item: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer wins every round (it writes just before each of the patch's
    compare-and-swaps): the patch tries for RACE_BUDGET_S, by the clock and not by a
    count of tries, then says so with a 409. (The clock is a fake one that moves 50 ms
    each time it is read, so the budget is a number of rounds, whatever the load.)"""
    settings = services_of(app).settings
    other: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_url)
    items = other[settings.mongodb_db][Item.get_collection_name()]
    real = writes.stored_content
    rounds, clock = [0], [0.0]

    def after_another_writer(content: Any) -> dict[str, Any]:
        items.update_one({"_id": ObjectId(item["id"])}, {"$inc": {"version": 1}})
        rounds[0] += 1
        return real(content)

    def ticking() -> float:
        clock[0] += 0.05
        return clock[0]

    monkeypatch.setattr(writes, "stored_content", after_another_writer)
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=ticking))
    monkeypatch.setattr(writes, "RACE_BUDGET_S", 1.5)  # 30 rounds of this clock
    try:
        response = await client.patch(
            f"{ITEMS}/{item['id']}", json={"title": "never"}, headers=alice.headers
        )
    finally:
        other.close()
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "urn:docstore:problem:conflict"
    assert 30 <= rounds[0] <= 32  # more than the 20 tries a count would have allowed
    after = await Item.get(item["id"])
    assert after is not None
    assert after.title == "Trip"

"""GET /items: where, q, tag, date bounds, sort, fields, and cursors under concurrent writes."""

import json
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from tests.commands import recording
from tests.conftest import Account, create_item, services_of, walk_pages

ITEMS = "/api/v1/items"


async def titles(client: httpx2.AsyncClient, owner: Account, **params: Any) -> list[str]:
    if "where" in params and not isinstance(params["where"], str):
        params["where"] = json.dumps(params["where"])
    response = await client.get(ITEMS, params=params, headers=owner.headers)
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


@pytest.fixture
async def shelf(client: httpx2.AsyncClient, alice: Account, bob: Account) -> list[dict[str, Any]]:
    made = [
        await create_item(
            client,
            alice,
            title="Apple pie",
            tags=["food", "sweet"],
            data={"price": 5, "stock": {"count": 3}, "vegan": False},
        ),
        await create_item(
            client,
            alice,
            title="Banana bread",
            description="Grandma's recipe",
            tags=["food"],
            data={"price": 8, "stock": {"count": 0}},
        ),
        await create_item(
            client,
            alice,
            title="Cherry jam",
            tags=["sweet", "jar"],
            data={"price": 12, "origin": "Kent"},
        ),
    ]
    await create_item(client, bob, title="Bob's apple", tags=["food"], data={"price": 1})
    return made


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"title": "Apple pie"}, ["Apple pie"]),
        ({"title": {"$eq": "Cherry jam"}}, ["Cherry jam"]),
        ({"title": {"$ne": "Cherry jam"}}, ["Banana bread", "Apple pie"]),
        ({"data.price": {"$gt": 5}}, ["Cherry jam", "Banana bread"]),
        ({"data.price": {"$gte": 5, "$lt": 12}}, ["Banana bread", "Apple pie"]),
        ({"data.price": {"$lte": 5}}, ["Apple pie"]),
        ({"data.stock.count": {"$gt": 0}}, ["Apple pie"]),
        ({"tags": {"$in": ["jar", "nothing"]}}, ["Cherry jam"]),
        ({"tags": {"$nin": ["sweet"]}}, ["Banana bread"]),
        ({"data.origin": {"$exists": True}}, ["Cherry jam"]),
        ({"data.vegan": False}, ["Apple pie"]),
        ({"version": 1}, ["Cherry jam", "Banana bread", "Apple pie"]),
        ({"$or": [{"data.price": 5}, {"data.price": 12}]}, ["Cherry jam", "Apple pie"]),
        ({"$and": [{"tags": "food"}, {"tags": "sweet"}]}, ["Apple pie"]),
        (
            {"created_at": {"$gt": "2000-01-01T00:00:00Z"}},
            ["Cherry jam", "Banana bread", "Apple pie"],
        ),
        ({"updated_at": {"$lt": "2000-01-01T00:00:00+02:00"}}, []),
    ],
)
async def test_where_operators(
    client: httpx2.AsyncClient, alice: Account, shelf: Any, where: Any, expected: list[str]
) -> None:
    assert await titles(client, alice, where=where) == expected


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ({"$where": "sleep(1000)"}, "$where"),
        ({"title": {"$regex": ".*"}}, "$regex"),
        ({"$expr": {"$gt": ["$data.price", 1]}}, "$expr"),
        ({"title": {"$function": {}}}, "$function"),
        ({"owner_id": "x"}, "owner_id"),
        ({"description": "x"}, "description"),
        ({"search_terms": "apple"}, "search_terms"),
        ({"data.$gt": 1}, "data.$gt"),
        ({"data..x": 1}, "data..x"),
        ({"title": {"nested": "object"}}, "nested"),
        ({"title": {"$eq": {"$gt": ""}}}, "title"),
        ({"tags": {"$in": "food"}}, "$in"),
        ({"data.x": {"$exists": "yes"}}, "$exists"),
        ({"created_at": {"$gt": "yesterday"}}, "yesterday"),
        ({"created_at": {"$gt": "2020-01-01T00:00:00"}}, "with an offset"),
        ({"version": "1"}, "version"),
        ({"$or": []}, "$or"),
        ({"$or": {"title": "x"}}, "$or"),
        (
            {"$and": [{"$or": [{"$and": [{"$or": [{"$and": [{"$or": [{"title": "x"}]}]}]}]}]}]},
            "deeper",
        ),
    ],
)
async def test_where_refuses_what_is_not_allowed(
    client: httpx2.AsyncClient, alice: Account, where: Any, named: str
) -> None:
    response = await client.get(ITEMS, params={"where": json.dumps(where)}, headers=alice.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert named in response.json()["detail"]


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"title"', "null", "x" * 5000])
async def test_where_must_be_a_json_object(
    client: httpx2.AsyncClient, alice: Account, raw: str
) -> None:
    response = await client.get(ITEMS, params={"where": raw}, headers=alice.headers)
    assert response.status_code == 422
    assert "where" in response.json()["detail"]


@pytest.mark.parametrize(
    "where",
    [
        {"$or": [{"owner_id": "someone"}, {"title": {"$exists": True}}]},
        {"$or": [{"title": {"$exists": True}}, {"title": {"$exists": False}}]},
        {"title": {"$ne": None}},
    ],
)
async def test_no_where_widens_the_owner_scope(
    client: httpx2.AsyncClient, alice: Account, bob: Account, shelf: Any, where: Any
) -> None:
    response = await client.get(ITEMS, params={"where": json.dumps(where)}, headers=bob.headers)
    assert response.status_code in (200, 422)
    if response.status_code == 200:
        assert [i["title"] for i in response.json()["items"]] == ["Bob's apple"]


async def test_search_q(client: httpx2.AsyncClient, alice: Account, shelf: Any) -> None:
    assert await titles(client, alice, q="apple") == ["Apple pie"]  # bob's is not alice's
    assert await titles(client, alice, q="BAN") == ["Banana bread"]  # prefix, any case
    assert await titles(client, alice, q="grandma") == ["Banana bread"]  # description
    assert await titles(client, alice, q="sweet") == ["Cherry jam", "Apple pie"]  # tags
    assert await titles(client, alice, q="cherry jam") == ["Cherry jam"]  # every word
    assert await titles(client, alice, q="cherry pie") == []
    assert await titles(client, alice, q="(jam|pie)") == []  # words, not a regex
    many = " ".join(["c", "ch", "che", "cher", "cherr", "cherry", "j", "ja", "jam"] * 5)
    assert await titles(client, alice, q=many) == ["Cherry jam"]  # no cap on words


async def test_search_q_bounds(client: httpx2.AsyncClient, alice: Account, shelf: Any) -> None:
    too_long = await client.get(ITEMS, params={"q": "x" * 201}, headers=alice.headers)
    assert too_long.status_code == 422
    for wordless in ("", "   ", "..."):  # nothing to look for: it narrows nothing
        assert len(await titles(client, alice, q=wordless)) == 3


async def test_search_follows_updates(
    client: httpx2.AsyncClient, alice: Account, shelf: list[dict[str, Any]]
) -> None:
    url = f"{ITEMS}/{shelf[0]['id']}"
    await client.patch(url, json={"title": "Plum tart"}, headers=alice.headers)
    assert await titles(client, alice, q="apple") == []
    assert await titles(client, alice, q="plum") == ["Plum tart"]


async def test_tag_and_date_filters(
    client: httpx2.AsyncClient, alice: Account, shelf: list[dict[str, Any]]
) -> None:
    assert await titles(client, alice, tag=["FOOD", "sweet"]) == ["Apple pie"]
    assert await titles(client, alice, tag="food") == ["Banana bread", "Apple pie"]
    middle = shelf[1]["created_at"]
    assert await titles(client, alice, created_after=middle) == ["Cherry jam"]
    assert await titles(client, alice, created_before=middle) == ["Apple pie"]
    naive = await client.get(
        ITEMS, params={"created_after": "2020-01-01T00:00:00"}, headers=alice.headers
    )
    assert naive.status_code == 422


async def test_sort_orders(client: httpx2.AsyncClient, alice: Account, shelf: Any) -> None:
    assert await titles(client, alice, sort="title") == ["Apple pie", "Banana bread", "Cherry jam"]
    assert await titles(client, alice, sort="-title") == ["Cherry jam", "Banana bread", "Apple pie"]
    assert await titles(client, alice, sort="created_at") == [
        "Apple pie",
        "Banana bread",
        "Cherry jam",
    ]
    await client.patch(f"{ITEMS}/{shelf[0]['id']}", json={"data": {"x": 1}}, headers=alice.headers)
    assert (await titles(client, alice, sort="-updated_at"))[0] == "Apple pie"
    for bad in ("price", "-owner_id", "", "--title"):
        response = await client.get(ITEMS, params={"sort": bad}, headers=alice.headers)
        assert response.status_code == 422, bad


async def test_fields_projection(client: httpx2.AsyncClient, alice: Account, shelf: Any) -> None:
    response = await client.get(
        ITEMS, params={"fields": "title,tags", "sort": "title"}, headers=alice.headers
    )
    first = response.json()["items"][0]
    assert first == {"id": shelf[0]["id"], "title": "Apple pie", "tags": ["food", "sweet"]}
    full = (await client.get(ITEMS, params={"sort": "title"}, headers=alice.headers)).json()
    assert full["items"][0] == shelf[0]
    for bad in ("password", "title,search_terms", ",", "_id"):
        response = await client.get(ITEMS, params={"fields": bad}, headers=alice.headers)
        assert response.status_code == 422, bad


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "title", "-title", "-updated_at"])
async def test_cursor_walks_every_sort(
    client: httpx2.AsyncClient, alice: Account, sort: str
) -> None:
    for i in range(7):
        await create_item(client, alice, title=f"same title {i % 2}")  # ties: the id decides
    rows = await walk_pages(client, ITEMS, alice.headers, limit=2, sort=sort, fields="title")
    everything = await titles(client, alice, sort=sort, limit=100)
    assert [row["title"] for row in rows] == everything
    assert len({row["id"] for row in rows}) == 7


async def test_cursor_is_stable_under_concurrent_writes(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    steady = [(await create_item(client, alice, title=f"steady {i}"))["id"] for i in range(12)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(ITEMS, params=params, headers=alice.headers)).json()
        seen += [item["id"] for item in page["items"]]
        # Between pages: new items arrive (newest first: before our position) and
        # an item we already saw is deleted; neither may shift what comes next.
        await create_item(client, alice, title="arrived meanwhile")
        if seen:
            await client.delete(f"{ITEMS}/{seen[0]}", headers=alice.headers)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))  # no duplicates
    assert sorted(i for i in seen if i in steady) == sorted(steady)  # no gaps
    assert seen[:12] == steady[::-1]


async def test_total_counts_the_filter(
    client: httpx2.AsyncClient, alice: Account, shelf: Any
) -> None:
    response = await client.get(
        ITEMS, params={"tag": "food", "include_total": True, "limit": 1}, headers=alice.headers
    )
    body = response.json()
    assert body["total"] == 2
    assert len(body["items"]) == 1
    assert body["next_cursor"]


async def test_no_feed_cursor_without_a_live_feed(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """This app runs no live feed: it names no position it could not resume from."""
    response = await client.get("/api/v1/items", headers=alice.headers)
    assert response.status_code == 200
    assert "x-feed-cursor" not in response.headers


async def test_a_list_reads_only_what_it_shows(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """Items store up to 400 search words each: a list never reads them, and with
    `fields` reads only those (and the sort key its cursor needs)."""
    await create_item(client, alice, title="Banana bread", description="ripe bananas " * 50)
    database = services_of(app).settings.mongodb_db
    with recording(database) as commands:
        everything = await client.get("/api/v1/items", headers=alice.headers)
        some = await client.get("/api/v1/items", params={"fields": "title"}, headers=alice.headers)
    assert everything.status_code == some.status_code == 200
    finds = [c for c in commands if c["name"] == "find" and c["find"] == "items"]
    assert [find.get("projection") for find in finds] == [
        {"search_terms": 0},
        {"title": 1, "created_at": 1, "_id": 1},
    ]
    assert set(some.json()["items"][0]) == {"id", "title"}

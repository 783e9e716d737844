"""The OpenAPI document says what the API enforces: for a table of values per rule, a
value is valid by the published schema exactly when the API accepts it."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import jsonschema_rs
import pytest

from api.core.middleware import ANONYMOUS_BODY_BYTES
from tests.conftest import Account

ITEMS = "/api/v1/items"
USERS = "/api/v1/users"


@pytest.fixture
async def document(client: httpx2.AsyncClient) -> dict[str, Any]:
    published: dict[str, Any] = (await client.get("/openapi.json")).json()
    return published


def schema_says(document: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` is valid by `schema` (refs resolved in `document`), as JSON Schema
    2020-12 (OpenAPI 3.1's dialect) and its ECMA-262 patterns judge it."""
    root = {**schema, "components": document["components"]}
    return bool(jsonschema_rs.Draft202012Validator(root).is_valid(value))


def body_property(document: dict[str, Any], model: str, name: str) -> dict[str, Any]:
    prop: dict[str, Any] = document["components"]["schemas"][model]["properties"][name]
    return prop


def query_parameter(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    for parameter in document["paths"][path]["get"]["parameters"]:
        if parameter["name"] == name:
            if "content" in parameter:
                schema: dict[str, Any] = parameter["content"]["application/json"]["schema"]
                return schema
            plain: dict[str, Any] = parameter["schema"]
            return plain
    raise AssertionError(f"no parameter {name}")


async def assert_agree(
    document: dict[str, Any],
    schema: dict[str, Any],
    values: list[Any],
    accepted: Callable[[Any], Awaitable[bool]],
) -> None:
    disagreements = [
        (value, "schema allows" if allowed else "schema refuses")
        for value in values
        if (allowed := schema_says(document, schema, value)) != await accepted(value)
    ]
    assert disagreements == []


async def test_passwords(
    client: httpx2.AsyncClient, document: dict[str, Any], admin: Account
) -> None:
    schema = body_property(document, "UserCreate", "password")
    assert schema["format"] == "password"
    assert "72 bytes" in schema["description"]
    passwords = [
        "Short-1", "long-enough-1", "LONG-ENOUGH-X", "Long-enough-1", "1-LONG-ENOUGH-a",
        "Ünïcode-Pass-1", "A1\nsplit-over-lines", "A1" + "x" * 70, "A1" + "x" * 71,
        "Aa-٣-not-an-ascii-digit", "a1-\uff26ULLWIDTH-upper",
    ]  # fmt: skip
    made = iter(range(1000))

    async def accepted(password: str) -> bool:
        n = next(made)
        user = {"email": f"p{n}@example.com", "username": f"pass{n}", "password": password}
        response = await client.post(USERS, json=user, headers=admin.headers)
        assert response.status_code in (201, 422), response.text
        return response.status_code == 201

    await assert_agree(document, schema, passwords, accepted)
    # The one rule the description states and no keyword can: 72 bytes, not characters.
    multibyte = "A1" + "é" * 40
    assert schema_says(document, schema, multibyte)
    assert not await accepted(multibyte)


async def test_item_titles_tags_and_data(
    client: httpx2.AsyncClient, document: dict[str, Any], alice: Account
) -> None:
    item = document["components"]["schemas"]["ItemCreate"]

    async def accepted(body: dict[str, Any]) -> bool:
        response = await client.post(ITEMS, json=body, headers=alice.headers)
        assert response.status_code in (201, 422), response.text
        return response.status_code == 201

    bodies: list[dict[str, Any]] = [
        *(
            {"title": title}
            for title in ["x", " x ", "   ", "\t\n", "x" * 200, " " + "x" * 200, "\x1c", "\ufeff"]
        ),
        *(
            {"title": "t", "tags": tags}
            for tags in [["a"], [" a "], [" "], ["x" * 50], [" " + "x" * 50]]
        ),
        *({"title": "t", "data": {key: 1}} for key in ["ok", "", "$x", "a.b", "x\x00", "x$"]),
        {"title": "t", "data": {"a": {"b.c": 1}}},
        {"title": "t", "data": {"a": [{"$b": 1}]}},
        {"title": "t", "data": {"n": 2**63 - 1}},
        {"title": "t", "data": {"n": 2**63}},
        {"title": "t", "data": {"n": 1e19}},
        {"title": "t", "data": {"n": -(2**63)}},
        {"title": "t", "data": {"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}},
        {"title": "t", "data": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}},
        {"title": "t", "data": {"a": [[[[[[[[1]]]]]]]]}},
        {"title": "t", "data": {"a": [[[[[[[[[1]]]]]]]]]}},
        {"title": "t", "is": "extra"},
        {"title": 5},
    ]  # fmt: skip
    await assert_agree(document, item, bodies, accepted)


async def test_merge_patches(
    client: httpx2.AsyncClient, document: dict[str, Any], alice: Account
) -> None:
    patch = document["components"]["schemas"]["ItemMergePatch"]
    assert "null" not in str(patch["properties"]["title"])  # an item always has a title
    created = await client.post(ITEMS, json={"title": "t"}, headers=alice.headers)
    url = f"{ITEMS}/{created.json()['id']}"

    async def accepted(body: dict[str, Any]) -> bool:
        response = await client.patch(url, json=body, headers=alice.headers)
        assert response.status_code in (200, 422), response.text
        return response.status_code == 200

    bodies: list[dict[str, Any]] = [
        {"title": "new"}, {"title": None}, {"title": "  "}, {"description": None},
        {"tags": None}, {"data": {"k": None}}, {"data": {"": 1}}, {"data": {"a": {"b.c": 1}}},
        {"id": "x"}, {"version": 3},
    ]  # fmt: skip
    await assert_agree(document, patch, bodies, accepted)


async def test_list_parameters(
    client: httpx2.AsyncClient, document: dict[str, Any], alice: Account
) -> None:
    values: dict[str, list[Any]] = {
        "sort": ["title", "-title", "created_at", "-updated_at", "version", "+title", ""],
        "fields": [
            "title", "title,tags", " , title , , id ,", "titletags", "bogus", "", ",",
            "title\x1c", "title\u00a0",
        ],
        "q": ["jam", "...", "", "   ", "é", "x" * 200, "x" * 201],
        "created_after": [
            "2020-01-01T00:00:00Z", "2020-01-01T00:00:00+05:30", "2020-01-01T00:00:00",
            "1", "2020-01-01", "yesterday", "2020-01-01T00:00:00Z\n",
            "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "2020-01-01T23:59:60Z",
        ],
    }  # fmt: skip
    for name, cases in values.items():
        schema = query_parameter(document, ITEMS, name)

        async def accepted(value: Any, name: str = name) -> bool:
            response = await client.get(ITEMS, params={name: value}, headers=alice.headers)
            assert response.status_code in (200, 422), response.text
            return response.status_code == 200

        await assert_agree(document, schema, cases, accepted)


async def test_where_is_json_with_a_schema_of_its_own(
    client: httpx2.AsyncClient, document: dict[str, Any], alice: Account
) -> None:
    schema = query_parameter(document, ITEMS, "where")
    filters: list[Any] = [
        {}, {"title": "Jam"}, {"title": {"$in": ["a", "b"]}}, {"title": {}}, {"nope": 1},
        {"$where": "1"}, {"data.price": {"$lt": 10}}, {"data.$x": 1}, {"data": 1},
        {"version": 2}, {"version": "2"}, {"version": 2.5},
        {"created_at": {"$gt": "2020-01-01T00:00:00Z"}}, {"created_at": {"$gt": "2020-01-01"}},
        {"created_at": {"$gt": "1"}}, {"$and": [{"title": "a"}, {"$or": [{"tags": "b"}]}]},
        {"$and": []}, {"title": {"$exists": 1}}, {"title": "x\x00"}, {"title": 2**63},
        {"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"title": "a"}]}]}]}]}]},
        {"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"title": "a"}]}]}]}]}]}]},
        [], "text",
    ]  # fmt: skip

    async def accepted(value: Any) -> bool:
        where = httpx2.QueryParams({"where": json.dumps(value)})
        response = await client.get(f"{ITEMS}?{where}", headers=alice.headers)
        assert response.status_code in (200, 422), response.text
        return response.status_code == 200

    await assert_agree(document, schema, filters, accepted)


async def test_open_registration_needs_no_token(document: dict[str, Any]) -> None:
    assert document["paths"][USERS]["post"]["security"] == [{}, {"OAuth2PasswordBearer": []}]
    assert document["paths"][USERS]["get"]["security"] == [{"OAuth2PasswordBearer": []}]


async def test_login_fields_are_not_empty(
    client: httpx2.AsyncClient, document: dict[str, Any]
) -> None:
    form = document["components"]["schemas"]["PasswordGrant"]["properties"]
    assert (form["username"]["minLength"], form["password"]["minLength"]) == (1, 1)
    empty = await client.post("/api/v1/auth/login", data={"username": "", "password": "x"})
    assert empty.status_code == 422


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        (ITEMS, "GET, POST"),
        (f"{ITEMS}/6b0eb1765a52b75f263c97de", "GET, PUT, PATCH, DELETE"),
        (USERS, "GET, POST"),
        (f"{USERS}/6b0eb1765a52b75f263c97de", "GET, PATCH, DELETE"),
        ("/api/v1/auth/login", "POST"),
        # A path that another template (`/items/{item_id}`) matches too: its own methods.
        (f"{ITEMS}/batch", "POST"),
    ],
)
async def test_a_405_lists_every_method_of_the_path(
    client: httpx2.AsyncClient, path: str, methods: str
) -> None:
    """Starlette names only the methods of the first route whose path matched."""
    response = await client.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.headers["allow"] == methods
    for method in methods.split(", "):  # and each listed method is answered, not a 405
        answered = await client.request(method, path)
        assert answered.status_code != 405, method
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_live_feed_asked_as_plain_http_is_a_documented_426(
    client: httpx2.AsyncClient, document: dict[str, Any]
) -> None:
    response = await client.get("/api/v1/ws/items")
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert response.json()["type"] == "urn:docstore:problem:upgrade-required"
    assert "426" in document["paths"]["/api/v1/ws/items"]["get"]["responses"]


def responses_of(document: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, status, response)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation.get("responses", {}).items()
    ]


async def test_every_429_503_and_401_declares_the_header_it_carries(
    document: dict[str, Any],
) -> None:
    """Sent with every such problem (throttles, a busy hashing pool, a database away,
    a missing login): a client generated from the document can read it."""
    carried = {"429": "Retry-After", "503": "Retry-After", "401": "WWW-Authenticate"}
    missing = [
        (method, path, status)
        for method, path, status, response in responses_of(document)
        if status in carried and carried[status] not in response.get("headers", {})
    ]
    assert missing == []


async def test_versions_and_new_urls_are_declared_where_sent(
    document: dict[str, Any], client: httpx2.AsyncClient, alice: Account
) -> None:
    item_path, paths = f"{ITEMS}/{{item_id}}", document["paths"]
    declared = {
        ("get", item_path, "200"): "ETag",
        ("get", item_path, "304"): "ETag",
        ("patch", item_path, "200"): "ETag",
        ("put", item_path, "200"): "ETag",
        ("post", ITEMS, "201"): "ETag",
        ("post", ITEMS, "201", "Location"): "Location",
        ("post", USERS, "201"): "Location",
    }
    for where, header in declared.items():
        method, path, status = where[:3]
        assert header in paths[path][method]["responses"][status].get("headers", {}), where
    # ... and sent there.
    made = await client.post(ITEMS, json={"title": "t"}, headers=alice.headers)
    url = f"{ITEMS}/{made.json()['id']}"
    sent = [
        made,
        await client.get(url, headers=alice.headers),
        await client.patch(url, json={"title": "u"}, headers=alice.headers),
        await client.put(url, json={"title": "v"}, headers=alice.headers),
    ]
    assert all("etag" in response.headers for response in sent)
    assert "location" in made.headers
    signed_up = await client.post(
        USERS, json={"email": "eve@example.com", "username": "eve", "password": "Eve-pass-123"}
    )
    assert (signed_up.status_code, "location" in signed_up.headers) == (201, True)


async def test_the_413_says_how_much_an_unknown_caller_may_send(
    document: dict[str, Any],
) -> None:
    """The body limit is lower until a route has authenticated its caller."""
    kib = f"{ANONYMOUS_BODY_BYTES // 1024} KiB"
    described = {
        response["description"]
        for _, _, status, response in responses_of(document)
        if status == "413"
    }
    assert len(described) == 1
    assert kib in described.pop()


async def test_metrics_say_they_count_every_worker(document: dict[str, Any]) -> None:
    described = document["paths"]["/metrics"]["get"]["description"]
    assert "every worker" in described
    assert "this process" not in described

"""No input produces a 500: every bad request gets a 4xx problem and changes nothing."""

import json
from typing import Any

import httpx2
import pytest

from documents import Item, User
from tests.conftest import Account

ITEMS = "/api/v1/items"
USERS = "/api/v1/users"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


JSON = {"content-type": "application/json"}
DEEP_AND = '{"$and": [' * 300 + "]}" * 300
NUL_IN_WHERE = '{"title": "\\u0000"}'  # a JSON escape: the filter holds a NUL

# (method, path, raw body or JSON-able value, expected status)
MALFORMED: list[tuple[str, str, Any, int]] = [
    ("POST", ITEMS, b"{not json", 400),
    ("POST", ITEMS, b"", 422),
    ("POST", ITEMS, b"[" * 100_000 + b"]" * 100_000, 400),  # deeper than the parser goes
    ("POST", ITEMS, b'{"title": "\\ud800"}', 422),  # lone surrogate: JSON-valid, not storable
    ("POST", ITEMS, b'{"title": "t", "data": {"n": NaN}}', 422),
    ("POST", ITEMS, [1, 2], 422),
    ("POST", ITEMS, "just a string", 422),
    ("POST", ITEMS, {"title": 5}, 422),
    ("POST", ITEMS, {"title": ""}, 422),
    ("POST", ITEMS, {"title": "t" * 201}, 422),
    ("POST", ITEMS, {"title": "t", "description": "d" * 5001}, 422),
    ("POST", ITEMS, {"title": "t", "unknown": 1}, 422),
    ("POST", ITEMS, {"title": "t", "owner_id": "0123456789abcdef01234567"}, 422),
    ("POST", ITEMS, {"title": "t", "tags": "not-a-list"}, 422),
    ("POST", ITEMS, {"title": "t", "tags": [f"t{i}" for i in range(21)]}, 422),
    ("POST", ITEMS, {"title": "t", "tags": ["x" * 51]}, 422),
    ("POST", ITEMS, {"title": "t", "tags": [""]}, 422),
    ("POST", ITEMS, {"title": "t", "data": []}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"$where": "1"}}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"a": {"$set": 1}}}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"a.b": 1}}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"": 1}}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"a\u0000b": 1}}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"n": 2**64}}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"n": -(2**63) - 1}}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"s": "x" * (64 * 1024)}}, 422),
    ("POST", ITEMS, {"title": "t", "data": nested(11)}, 422),
    ("POST", ITEMS, {"title": "t", "data": {"l": [[[[[[[[[[[1]]]]]]]]]]]}}, 422),
    ("GET", f"{ITEMS}/not-an-id", None, 422),
    ("GET", f"{ITEMS}/0123456789abcdef0123456", None, 422),
    ("GET", f"{ITEMS}/0123456789abcdef0123456z", None, 422),
    ("GET", f"{ITEMS}/%24where", None, 422),
    ("PATCH", f"{ITEMS}/xyz", {"title": "t"}, 422),
    ("DELETE", f"{ITEMS}/xyz", None, 422),
    ("GET", f"{ITEMS}?limit=abc", None, 422),
    ("GET", f"{ITEMS}?skip=-1", None, 422),
    ("GET", f"{ITEMS}?skip=99999999999999999999", None, 422),
    ("GET", f"{ITEMS}?include_total=maybe", None, 422),
    ("GET", f"{ITEMS}?owner_id=nope", None, 422),
    ("GET", f"{ITEMS}?cursor=%00%01", None, 400),
    ("GET", f"{USERS}/nope", None, 422),
    ("GET", f"{USERS}?q={'x' * 101}", None, 422),
    ("PATCH", f"{USERS}/nope", {}, 422),
    ("POST", USERS, {"email": ["a"], "username": 1, "password": None}, 422),
    ("POST", USERS, {"email": "a@b.co", "username": "abc", "password": "Aa1" * 100}, 422),
    ("POST", USERS, b'{"email": "a@b.co", "username": "ab\\udc00c", "password": "Aa345678"}', 422),
    # Hostile: nesting deeper than any parser should go, numbers JSON cannot hold, bytes
    # that are not UTF-8; in every body that takes JSON, and in `where`.
    ("POST", ITEMS, b'{"title": "t", "data": ' + b'{"k": ' * 2000 + b"1" + b"}" * 2001, 400),
    ("PATCH", f"{ITEMS}/{'0' * 24}", b'{"data": ' + b'{"k": ' * 2000 + b"1" + b"}" * 2001, 400),
    ("PUT", f"{ITEMS}/{'0' * 24}", b'{"title": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400),
    ("POST", USERS, b'{"email": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400),
    ("POST", "/api/v1/auth/refresh", b'{"refresh_token": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400),
    ("GET", f"{ITEMS}?where={'[' * 2000}{']' * 2000}", None, 422),
    ("GET", f"{ITEMS}?where={DEEP_AND}", None, 422),
    ("POST", ITEMS, b'{"title": "t", "data": {"n": 1e400}}', 422),  # parses as infinity
    ("POST", ITEMS, b'{"title": "t", "data": {"n": 1e19}}', 422),
    ("POST", ITEMS, b'{"title": "t", "data": {"n": ' + b"9" * 5000 + b"}}", 400),
    ("POST", ITEMS, b'{"title": "\\u0000", "data": {"k\\u0000": 1}}', 422),
    ("POST", ITEMS, b'{"title": "\xff\xfe"}', 400),  # not UTF-8
    ("POST", ITEMS, b'{"title": "t", "data": {"s": "\\udfff"}}', 422),
    ("GET", f"{ITEMS}?where={NUL_IN_WHERE}", None, 422),
    ("PUT", ITEMS, {"title": "t"}, 405),
    ("GET", "/api/v1/nowhere", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), MALFORMED)
async def test_malformed_input_is_a_clear_4xx(
    client: httpx2.AsyncClient,
    alice: Account,
    admin: Account,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    before = (await Item.count(), await User.count())
    headers = {**admin.headers, **JSON}
    content = (
        body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    )
    response = await client.request(method, path, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= problem.keys()
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    assert (await Item.count(), await User.count()) == before


async def test_validation_problems_name_the_field(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    response = await client.post(
        ITEMS, json={"title": "t", "data": {"$bad": 1}}, headers=alice.headers
    )
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "data"]
    assert "'$bad'" in problem["detail"]
    assert problem["title"] == "Validation failed"
    assert problem["instance"] == ITEMS


async def test_wrong_content_type_is_refused(client: httpx2.AsyncClient, alice: Account) -> None:
    response = await client.post(
        ITEMS, content=b"title=x", headers={**alice.headers, "content-type": "text/plain"}
    )
    assert 400 <= response.status_code < 500
    assert await Item.count() == 0


async def test_data_at_the_limits_is_accepted(client: httpx2.AsyncClient, alice: Account) -> None:
    data = {"deep": nested(9), "s": "x" * (60 * 1024), "big": 2**63 - 1, "list": [[[1]]]}
    response = await client.post(ITEMS, json={"title": "t", "data": data}, headers=alice.headers)
    assert response.status_code == 201
    assert response.json()["data"] == data


async def test_oversized_body_is_413(client: httpx2.AsyncClient, alice: Account) -> None:
    body = json.dumps({"title": "t", "data": {"s": "x" * (2 * 1024 * 1024)}}).encode()
    announced = await client.post(ITEMS, content=body, headers={**alice.headers, **JSON})
    assert announced.status_code == 413
    assert announced.headers["content-type"] == "application/problem+json"
    assert "1048576 bytes" in announced.json()["detail"]

    async def chunks() -> Any:  # no Content-Length: the limit is counted as it streams
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = await client.post(ITEMS, content=chunks(), headers={**alice.headers, **JSON})
    assert streamed.status_code == 413
    assert await Item.count() == 0


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data"],
)
async def test_a_body_that_is_not_json_is_refused(
    client: httpx2.AsyncClient, alice: Account, content_type: str
) -> None:
    headers = {**alice.headers, "content-type": content_type}
    response = await client.post(ITEMS, content=b"title=x", headers=headers)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    assert await Item.count() == 0


async def test_duplicate_keys_count_once_the_last_one(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """RFC 8259 leaves it open; like most parsers, the last one counts (docs/index.md)."""
    body = b'{"title": "first", "title": "second"}'
    response = await client.post(ITEMS, content=body, headers={**alice.headers, **JSON})
    assert (response.status_code, response.json()["title"]) == (201, "second")


async def test_ten_thousand_query_parameters_are_no_trouble(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    response = await client.get(f"{ITEMS}?{'a=1&' * 10_000}limit=5", headers=alice.headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "flood",
    [{f"x-h{n}": "v" for n in range(300)}, {"x-big": "v" * (100 * 1024)}],
    ids=["many", "large"],
)
async def test_a_header_flood_is_a_431(
    client: httpx2.AsyncClient, alice: Account, flood: dict[str, str]
) -> None:
    response = await client.get(ITEMS, headers={**alice.headers, **flood})
    assert response.status_code == 431
    assert response.json()["type"] == "urn:docstore:problem:headers-too-large"
    assert "x-request-id" in response.headers  # answered like every other response

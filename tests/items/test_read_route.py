"""`GET /items/{item_id}` answered in front of FastAPI's routing (api/items/read_route.py)
answers as the documented route does, case for case."""

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from bson import ObjectId
from fastapi import FastAPI

from api.items import read_route
from documents import Item, User
from tests.accounts.test_access_tokens import bearer, make_token
from tests.conftest import Account, create_item, make_account

ITEMS = "/api/v1/items"
# What may differ between two answers to the same request: nothing a client reads.
UNIQUE = {"x-request-id", "date"}

Answer = tuple[int, dict[str, str], bytes]


async def _answers(
    client: httpx2.AsyncClient, cases: list[tuple[str, dict[str, str]]]
) -> list[Answer]:
    answers = []
    for path, headers in cases:
        response = await client.get(path, headers=headers)
        kept = {k: v for k, v in response.headers.items() if k not in UNIQUE}
        answers.append((response.status_code, kept, response.content))
    return answers


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the route in front answered itself."""
    paths: list[str] = []
    real = read_route._answer

    async def spying(request: Any, scopes: list[str]) -> Any:
        paths.append(request.url.path)
        return await real(request, scopes)

    monkeypatch.setattr(read_route, "_answer", spying)
    return paths


async def test_the_route_in_front_answers_as_the_documented_route(
    app: FastAPI,
    client: httpx2.AsyncClient,
    alice: Account,
    bob: Account,
    admin: Account,
    answered: list[str],
) -> None:
    carol = await make_account(app, "carol")
    item = await create_item(client, alice, title="shared", data={"n": 1})
    shared = await client.post(
        f"{ITEMS}/{item['id']}/shares",
        json={"user": "bob", "role": "viewer"},
        headers=alice.headers,
    )
    assert shared.status_code == 201, shared.text
    mangled = await create_item(client, alice, title="mangled")
    collection = Item.get_pymongo_collection()
    await collection.update_one({"_id": ObjectId(mangled["id"])}, {"$set": {"title": 7}})
    reader = bearer(await make_token(client, alice, ["items:read"]))
    unscoped = bearer(await make_token(client, alice, ["account:read"]))
    admins = bearer(await make_token(client, admin, ["items:read"]))
    gone = await make_account(app, "gone")
    await User.get_pymongo_collection().update_one(
        {"_id": gone.user.id}, {"$set": {"is_active": False}}
    )
    at: Callable[[str], str] = lambda item_id: f"{ITEMS}/{item_id}"  # noqa: E731
    by_id = at(item["id"])
    cases = [
        (by_id, alice.headers),
        (by_id, bob.headers),  # a viewer
        (by_id, carol.headers),  # a stranger: 404
        (by_id, admin.headers),  # a superuser: access admin
        (by_id, admins),  # a superuser's token acts as a user: 404
        (by_id, {}),  # no login: 401 with its challenge
        (by_id, {"Authorization": "Bearer not-a-token"}),
        (by_id, {"Authorization": f"Basic {alice.token}"}),
        (by_id, {"Authorization": f"bearer {alice.token}"}),
        (by_id, gone.headers),  # a deactivated account
        (by_id, reader),
        (by_id, unscoped),  # a token without items:read: 403
        (by_id, {**alice.headers, "If-None-Match": '"1"'}),
        (by_id, {**alice.headers, "If-None-Match": 'W/"1", "9"'}),
        (by_id, {**alice.headers, "If-None-Match": '"2"'}),
        (by_id, {**alice.headers, "If-None-Match": "*"}),
        (by_id.upper().replace("/API/V1/ITEMS", ITEMS), alice.headers),
        (f"{by_id}?fields=title", alice.headers),
        (at(str(ObjectId())), alice.headers),  # nobody's: 404
        (at(mangled["id"]), alice.headers),  # another tool's document: 409
        (at(mangled["id"]), carol.headers),  # ... and still a 404 to a stranger
        (at("trash"), alice.headers),  # not an id: left to the routes behind
        (at("not-an-id"), alice.headers),
        (f"{by_id}/", alice.headers),
    ]
    in_front = await _answers(client, cases)
    assert len(answered) == 21  # every case with a 24-hex id went no further

    route = app.router.routes[0]
    assert isinstance(route, read_route.ReadItemRoute)
    app.router.routes.remove(route)
    try:
        documented = await _answers(client, cases)
    finally:
        app.router.routes.insert(0, route)
    assert len(answered) == 21
    for case, mine, theirs in zip(cases, in_front, documented, strict=True):
        assert mine == theirs, case
    statuses = [status for status, _, _ in in_front]
    assert statuses == [
        200, 200, 404, 200, 404, 401, 401, 401, 200, 401, 200, 403,
        304, 304, 200, 304, 200, 200, 404, 409, 404, 200, 422, 307,
    ]  # fmt: skip


async def test_the_route_in_front_serves_below_a_mount_point(
    app: FastAPI, alice: Account, answered: list[str]
) -> None:
    """Behind a proxy that mounts the API under a prefix (`root_path`), the read is
    still answered in front, and `url_path_for` still names the documented path."""
    transport = httpx2.ASGITransport(app=app, root_path="/docstore")
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        item = await create_item(client, alice)
        read = await client.get(f"/docstore{ITEMS}/{item['id']}", headers=alice.headers)
    assert read.status_code == 200, read.text
    assert read.json()["id"] == item["id"]
    assert answered == [f"/docstore{ITEMS}/{item['id']}"]
    assert app.url_path_for("read_item", item_id=item["id"]) == f"{ITEMS}/{item['id']}"
    # ... and FastAPI's own telemetry (when on) names the read by its template.
    assert getattr(app.router.routes[0], "path_format", None) == f"{ITEMS}/{{item_id}}"

"""Personal access tokens: shown once, stored hashed, bounded by scopes, revocable at once."""

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from bson import ObjectId
from fastapi import FastAPI

from api.accounts import action_tokens, personal_tokens
from api.core.errors import NotAuthenticated
from documents import AccessToken, AccessTokenCreate, Purpose, User
from documents.base import utcnow
from tests.conftest import PASSWORD, Account, create_item, moment

TOKENS = "/api/v1/auth/tokens"
ITEMS = "/api/v1/items"
ALL_SCOPES = ["items:read", "items:write", "items:share", "account:read", "webhooks:write"]
SCOPE_PROBLEM = "urn:docstore:problem:insufficient-scope"
INVALID_TOKEN = "urn:docstore:problem:invalid-access-token"


async def make_token(
    client: httpx2.AsyncClient, owner: Account, scopes: list[str], **extra: Any
) -> dict[str, Any]:
    body = {"name": "sync job", "scopes": scopes, **extra}
    response = await client.post(TOKENS, json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['token']}"}


async def test_a_token_is_shown_once_and_stored_only_as_a_hash(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    created = await make_token(client, alice, ["items:read"], expires_in_days=30)
    assert set(created) == {
        "id", "name", "scopes", "created_at", "expires_at", "last_used_at", "token",
    }  # fmt: skip
    assert created["token"].startswith(f"dsk_{created['id']}_")
    assert created["scopes"] == ["items:read"]
    assert moment(created["expires_at"]) > moment(created["created_at"])
    secret = created["token"].split("_", 2)[2]
    [stored] = await AccessToken.get_pymongo_collection().find().to_list()
    assert secret not in repr(stored)
    assert created["token"] not in repr(stored)
    assert stored["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    listed = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert [token["id"] for token in listed] == [created["id"]]
    assert "token" not in listed[0]
    assert "secret_hash" not in listed[0]


async def test_a_token_works_as_a_bearer_within_its_scopes(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    reader = await make_token(client, alice, ["items:read"])
    item = await create_item(client, alice)
    read = await client.get(f"{ITEMS}/{item['id']}", headers=bearer(reader))
    assert read.status_code == 200
    assert read.json()["id"] == item["id"]
    listed = (await client.get(ITEMS, headers=bearer(reader))).json()["items"]
    assert [row["id"] for row in listed] == [item["id"]]
    refused = await client.post(ITEMS, json={"title": "x"}, headers=bearer(reader))
    assert refused.status_code == 403
    assert refused.json()["type"] == SCOPE_PROBLEM
    assert "items:write" in refused.json()["detail"]
    patch = await client.patch(f"{ITEMS}/{item['id']}", json={"title": "y"}, headers=bearer(reader))
    assert patch.status_code == 403
    assert "items:write" in patch.json()["detail"]
    me = await client.get("/api/v1/auth/me", headers=bearer(reader))
    assert me.status_code == 403
    assert "account:read" in me.json()["detail"]
    writer = await make_token(client, alice, ["items:write", "account:read"])
    made = await client.post(ITEMS, json={"title": "by a program"}, headers=bearer(writer))
    assert made.status_code == 201
    assert made.json()["owner_id"] == alice.id
    assert (await client.get("/api/v1/auth/me", headers=bearer(writer))).json()["id"] == alice.id
    assert (await client.get(ITEMS, headers=bearer(writer))).status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", TOKENS, {"name": "another", "scopes": ["items:read"]}),
        ("GET", TOKENS, None),
        ("PATCH", "/api/v1/users/{me}", {"password": "Taken-over-1", "current_password": PASSWORD}),
        ("PATCH", "/api/v1/users/{me}", {"email": "thief@example.com"}),
        ("GET", "/api/v1/auth/sessions", None),
        ("POST", "/api/v1/auth/logout-all", None),
        ("POST", "/api/v1/auth/logout", None),
        ("DELETE", "/api/v1/auth/sessions/{session}", None),
        ("POST", "/api/v1/auth/verify-email/request", None),
    ],
)
async def test_a_stolen_token_cannot_take_over_the_account(
    client: httpx2.AsyncClient, alice: Account, method: str, path: str, body: Any
) -> None:
    token = await make_token(client, alice, ALL_SCOPES)
    url = path.format(me=alice.id, session=alice.session_id)
    response = await client.request(method, url, json=body, headers=bearer(token))
    assert response.status_code == 403, response.text
    assert response.json()["type"] == SCOPE_PROBLEM
    user = await User.get(alice.user.id)
    assert user is not None
    assert (user.email, user.session_ids) == (alice.user.email, alice.user.session_ids)
    assert len(user.access_token_ids) == 1


async def test_openapi_says_exactly_where_a_token_is_accepted(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """Every operation that takes a login: a token holding every scope gets past sign-in
    where the document lists the AccessToken scheme, and a 403 everywhere else."""
    token = await make_token(client, alice, ALL_SCOPES)
    item = await create_item(client, alice)
    document = (await client.get("/openapi.json")).json()
    ids = {"user_id": alice.id, "item_id": item["id"], "session_id": alice.session_id}
    ids |= {"token_id": token["id"], "version": "1", "webhook_id": "0" * 24}
    ids |= {"delivery_id": "msg_" + "a" * 26}
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = {name for requirement in operation.get("security", []) for name in requirement}
            if "OAuth2PasswordBearer" not in names or (
                path.endswith("/users") and method == "post"
            ):
                continue
            url = path.format(**ids)
            response = await client.request(method, url, json={}, headers=bearer(token))
            assert "403" in operation["responses"], (method, path)  # documented, as given
            refused = response.status_code == 403 and response.json()["type"] == SCOPE_PROBLEM
            assert refused == ("AccessToken" not in names), (method, path, response.text)
            assert response.status_code != 401, (method, path)
            checked += 1
    assert checked >= 15


async def test_revoking_a_token_ends_it_at_once(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    token = await make_token(client, alice, ["items:read"])
    assert (await client.get(ITEMS, headers=bearer(token))).status_code == 200
    others = await client.delete(f"{TOKENS}/{token['id']}", headers=bob.headers)
    assert others.status_code == 404  # bob cannot revoke (or learn of) alice's token
    assert (
        await client.delete(f"{TOKENS}/{token['id']}", headers=alice.headers)
    ).status_code == 204
    after = await client.get(ITEMS, headers=bearer(token))
    assert after.status_code == 401
    assert after.json()["type"] == INVALID_TOKEN
    assert (await client.get(TOKENS, headers=alice.headers)).json()["items"] == []
    again = await client.delete(f"{TOKENS}/{token['id']}", headers=alice.headers)
    assert again.status_code == 404


async def test_logout_all_ends_every_token(client: httpx2.AsyncClient, alice: Account) -> None:
    tokens = [await make_token(client, alice, ["items:read"]) for _ in range(2)]
    assert (await client.post("/api/v1/auth/logout-all", headers=alice.headers)).status_code == 204
    for token in tokens:
        assert (await client.get(ITEMS, headers=bearer(token))).status_code == 401
    assert await AccessToken.find_all().count() == 0


async def test_deactivation_ends_tokens_and_reactivation_does_not_revive_them(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    token = await make_token(client, alice, ["items:read"])
    url = f"/api/v1/users/{alice.id}"
    off = await client.patch(url, json={"is_active": False}, headers=admin.headers)
    assert off.status_code == 200
    assert (await client.get(ITEMS, headers=bearer(token))).status_code == 401
    assert (await client.patch(url, json={"is_active": True}, headers=admin.headers)).is_success
    assert (await client.get(ITEMS, headers=bearer(token))).status_code == 401


async def test_a_password_reset_ends_tokens(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """Whoever had the password may have made tokens: recovering the account ends them."""
    token = await make_token(client, alice, ["items:read"])
    reset = await action_tokens.issue(alice.user, Purpose.reset_password, timedelta(hours=1), None)
    body = {"token": reset, "new_password": "Brand-new-pass-2"}
    assert (await client.post("/api/v1/auth/reset-password", json=body)).status_code == 204
    assert (await client.get(ITEMS, headers=bearer(token))).status_code == 401


async def test_a_token_past_its_expiry_is_refused(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    token = await make_token(client, alice, ["items:read"], expires_in_days=1)
    assert (await client.get(ITEMS, headers=bearer(token))).status_code == 200
    past = {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}}
    await AccessToken.get_pymongo_collection().update_one({}, past)
    assert (await client.get(ITEMS, headers=bearer(token))).status_code == 401


@pytest.mark.parametrize(
    "text",
    [
        "dsk_",
        "dsk_nothex_secret",
        "dsk_{id}_" + "A" * 43,  # the right id, a wrong secret
        "dsk_{id}_{secret}x",
        "dsk_{id}",
    ],
)
async def test_a_forged_token_is_refused(
    client: httpx2.AsyncClient, alice: Account, text: str
) -> None:
    token = await make_token(client, alice, ALL_SCOPES)
    forged = text.format(id=token["id"], secret=token["token"].split("_", 2)[2])
    response = await client.get(ITEMS, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["type"] == INVALID_TOKEN


async def test_last_use_is_recorded_at_most_once_a_minute(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    token = await make_token(client, alice, ["items:read"])
    assert token["last_used_at"] is None
    burst = [client.get(ITEMS, headers=bearer(token)) for _ in range(40)]
    assert {response.status_code for response in await asyncio.gather(*burst)} == {200}
    [first] = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert first["last_used_at"] is not None
    await asyncio.gather(*(client.get(ITEMS, headers=bearer(token)) for _ in range(10)))
    [later] = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert later["last_used_at"] == first["last_used_at"]  # within the minute: no write
    a_while_ago = {"$set": {"last_used_at": utcnow() - timedelta(minutes=2)}}
    await AccessToken.get_pymongo_collection().update_one({}, a_while_ago)
    await client.get(ITEMS, headers=bearer(token))
    [touched] = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert moment(touched["last_used_at"]) > moment(first["last_used_at"])


async def test_a_burst_of_creations_cannot_pass_the_limit(
    client: httpx2.AsyncClient, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(personal_tokens, "MAX_ACCESS_TOKENS", 5)
    body = {"name": "burst", "scopes": ["items:read"]}
    burst = [client.post(TOKENS, json=body, headers=alice.headers) for _ in range(40)]
    statuses = [response.status_code for response in await asyncio.gather(*burst)]
    assert statuses.count(201) == 5
    assert statuses.count(409) == 35
    assert await AccessToken.find_all().count() == 5
    listed = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert len(listed) == 5
    # Revoking one makes room again.
    assert (await client.delete(f"{TOKENS}/{listed[0]['id']}", headers=alice.headers)).is_success
    assert (await client.post(TOKENS, json=body, headers=alice.headers)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["items:read", "items:read"]},
        {"name": "x", "scopes": ["items:admin"]},
        {"name": " ", "scopes": ["items:read"]},
        {"name": "x" * 101, "scopes": ["items:read"]},
        {"name": "x", "scopes": ["items:read"], "expires_in_days": 0},
        {"name": "x", "scopes": ["items:read"], "expires_in_days": "30"},
        {"name": "x", "scopes": ["items:read"], "owner": "someone"},
    ],
)
async def test_a_bad_token_request_is_a_422_and_makes_nothing(
    client: httpx2.AsyncClient, alice: Account, body: dict[str, Any]
) -> None:
    response = await client.post(TOKENS, json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert await AccessToken.find_all().count() == 0


@pytest.mark.parametrize(
    "damage",
    [
        {"$set": {"token_version": "0"}},
        {"$set": {"scopes": ["items:read", "admin"]}},
        {"$unset": {"user_id": ""}},
        {"$set": {"expires_at": "never"}},
    ],
)
async def test_a_token_document_another_tool_mangled_is_honoured_by_nobody(
    client: httpx2.AsyncClient, alice: Account, damage: dict[str, Any]
) -> None:
    token = await make_token(client, alice, ["items:read"])
    await AccessToken.get_pymongo_collection().update_one({}, damage)
    response = await client.get(ITEMS, headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["type"] == INVALID_TOKEN


async def test_a_superusers_token_acts_as_a_plain_user(
    client: httpx2.AsyncClient, admin: Account, bob: Account
) -> None:
    """Its scopes speak of *your* items and account: a token never carries superuser
    powers, even when a superuser made it."""
    token = await make_token(client, admin, ALL_SCOPES)
    theirs = await create_item(client, bob)
    mine = await create_item(client, admin)
    listed = (await client.get(ITEMS, headers=bearer(token))).json()["items"]
    assert [row["id"] for row in listed] == [mine["id"]]
    assert (await client.get(f"{ITEMS}/{theirs['id']}", headers=bearer(token))).status_code == 404
    patch = await client.patch(
        f"{ITEMS}/{theirs['id']}", json={"title": "x"}, headers=bearer(token)
    )
    assert patch.status_code == 404
    others = await client.get(ITEMS, params={"owner_id": bob.id}, headers=bearer(token))
    assert others.status_code == 403
    assert (await client.get(f"/api/v1/users/{bob.id}", headers=bearer(token))).status_code == 403
    me = (await client.get("/api/v1/auth/me", headers=bearer(token))).json()
    assert me["is_superuser"] is True  # the account is shown as it is
    # The same admin, signed in with the password, sees everyone's.
    assert len((await client.get(ITEMS, headers=admin.headers)).json()["items"]) == 2


async def test_no_token_outlives_a_logout_all_it_races(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """Creations racing a logout-all: whatever they answered, no token is left alive."""
    body = {"name": "racer", "scopes": ["items:read"]}
    creations = [client.post(TOKENS, json=body, headers=alice.headers) for _ in range(20)]
    logout = client.post("/api/v1/auth/logout-all", headers=alice.headers)
    answers = await asyncio.gather(*creations[:10], logout, *creations[10:])
    assert answers.pop(10).status_code == 204
    made = [answer.json() for answer in answers if answer.status_code == 201]
    for token in made:
        assert (await client.get(ITEMS, headers=bearer(token))).status_code == 401
    assert await AccessToken.find_all().count() == 0


async def test_a_login_that_has_ended_makes_no_token(
    alice: Account, client: httpx2.AsyncClient
) -> None:
    assert (await client.post("/api/v1/auth/logout-all", headers=alice.headers)).status_code == 204
    body = AccessTokenCreate(name="late", scopes=["items:read"])
    with pytest.raises(NotAuthenticated):
        await personal_tokens.issue(alice.user, ObjectId(alice.session_id), body)
    assert await AccessToken.find_all().count() == 0

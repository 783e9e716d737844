"""/users: sign-up, self-or-superuser reads and changes, superuser list and delete."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from documents import Item, OutboxMessage, User
from documents.base import utcnow
from tests.conftest import (
    PASSWORD,
    Account,
    app_with,
    make_account,
    make_settings,
    moment,
    services_of,
    walk_pages,
)

USERS = "/api/v1/users"
AUTH = "/api/v1/auth"
NEW_USER = {"email": "Carol@Example.com", "username": "Carol", "password": "Secret-pass-1"}


async def test_sign_up(client: httpx2.AsyncClient) -> None:
    response = await client.post(USERS, json={**NEW_USER, "full_name": "Carol C"})
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"{USERS}/{body['id']}"
    assert body["email"] == "Carol@example.com"  # the domain is normalised
    assert body["username"] == "Carol"
    assert body["is_active"] is True
    assert body["is_superuser"] is False
    assert body["email_verified"] is False
    assert body["created_at"].endswith("Z")
    assert set(body) == {
        "id",
        "email",
        "username",
        "full_name",
        "is_active",
        "is_superuser",
        "email_verified",
        "created_at",
        "updated_at",
    }
    stored = await User.get(body["id"])
    assert stored is not None
    assert stored.hashed_password.startswith("$2")
    login = await client.post(
        "/api/v1/auth/login", data={"username": "carol", "password": NEW_USER["password"]}
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("duplicate", "field"),
    [
        ({"email": "CAROL@example.com", "username": "other"}, "email"),
        ({"email": "other@example.com", "username": "cAROL"}, "username"),
    ],
)
async def test_duplicates_are_409_case_insensitively(
    client: httpx2.AsyncClient, duplicate: dict[str, str], field: str
) -> None:
    assert (await client.post(USERS, json=NEW_USER)).status_code == 201
    response = await client.post(USERS, json={**NEW_USER, **duplicate})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"A record with this {field} already exists."
    assert await User.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"username": "ab"}, "username"),
        ({"username": "has space"}, "username"),
        ({"username": "x" * 51}, "username"),
        ({"password": "Short1"}, "password"),
        ({"password": "nouppercase1"}, "password"),
        ({"password": "NoDigitsHere"}, "password"),
        ({"password": "Aa1" + "é" * 35}, "password"),  # 73 bytes: never silently truncated
        ({"full_name": "n" * 101}, "full_name"),
        ({"is_admin": True}, "is_admin"),
    ],
)
async def test_sign_up_validation(
    client: httpx2.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await client.post(USERS, json={**NEW_USER, **change})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == field
    assert await User.count() == 0


async def test_anonymous_cannot_sign_up_as_superuser(client: httpx2.AsyncClient) -> None:
    response = await client.post(USERS, json={**NEW_USER, "is_superuser": True})
    assert response.status_code == 403
    assert await User.count() == 0


async def test_superuser_creates_superusers(client: httpx2.AsyncClient, admin: Account) -> None:
    response = await client.post(
        USERS, json={**NEW_USER, "is_superuser": True}, headers=admin.headers
    )
    assert response.status_code == 201
    assert response.json()["is_superuser"] is True


async def test_closed_registration(mongodb_url: str, tmp_path: Any) -> None:
    settings = make_settings(mongodb_url, tmp_path, registration_open=False)
    async with app_with(settings) as (app, client):
        closed = await client.post(USERS, json=NEW_USER)
        assert closed.status_code == 403
        assert "Registration is closed" in closed.json()["detail"]
        admin = await make_account(app, "admin", superuser=True)
        assert (await client.post(USERS, json=NEW_USER, headers=admin.headers)).status_code == 201


async def test_list_users_is_for_superusers(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    assert (await client.get(USERS)).status_code == 401
    assert (await client.get(USERS, headers=alice.headers)).status_code == 403
    response = await client.get(USERS, params={"include_total": True}, headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert [u["username"] for u in body["items"]] == ["alice", "bob", "admin"]
    assert body["total"] == 3
    assert body["next_cursor"] is None
    assert all("hashed_password" not in u for u in body["items"])


async def test_list_users_filters_and_pages(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    await bob.user.set({"is_active": False})
    only_bob = await client.get(USERS, params={"q": "BO"}, headers=admin.headers)
    assert [u["username"] for u in only_bob.json()["items"]] == ["bob"]
    regex_is_literal = await client.get(USERS, params={"q": ".*"}, headers=admin.headers)
    assert regex_is_literal.json()["items"] == []
    inactive = await client.get(USERS, params={"is_active": False}, headers=admin.headers)
    assert [u["username"] for u in inactive.json()["items"]] == ["bob"]
    rows = await walk_pages(client, USERS, admin.headers, limit=1)
    assert [u["username"] for u in rows] == ["alice", "bob", "admin"]
    skipped = await client.get(USERS, params={"skip": 2}, headers=admin.headers)
    assert [u["username"] for u in skipped.json()["items"]] == ["admin"]


async def test_read_self_or_superuser(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    assert (await client.get(f"{USERS}/{alice.id}", headers=alice.headers)).json()["id"] == alice.id
    assert (await client.get(f"{USERS}/{bob.id}", headers=alice.headers)).status_code == 403
    assert (await client.get(f"{USERS}/{bob.id}", headers=admin.headers)).status_code == 200
    missing = await client.get(f"{USERS}/0123456789abcdef01234567", headers=admin.headers)
    assert missing.status_code == 404
    # A regular user cannot probe which ids exist.
    probe = await client.get(f"{USERS}/0123456789abcdef01234567", headers=alice.headers)
    assert probe.status_code == 403
    assert (await client.get(f"{USERS}/{alice.id}")).status_code == 401


async def test_update_own_profile(client: httpx2.AsyncClient, alice: Account) -> None:
    await alice.user.set({"email_verified": True})
    earlier = utcnow() - timedelta(hours=1)  # so a change that bumps nothing shows
    users = User.get_pymongo_collection()
    await users.update_one({"_id": alice.user.id}, {"$set": {"updated_at": earlier}})
    response = await client.patch(
        f"{USERS}/{alice.id}",
        json={
            "full_name": "Alice A",
            "email": "alice2@example.com",
            "username": "alice2",
            "current_password": PASSWORD,  # an email change takes it
        },
        headers=alice.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["full_name"], body["email"], body["username"]) == (
        "Alice A",
        "alice2@example.com",
        "alice2",
    )
    assert body["email_verified"] is False  # a new address is not verified yet
    assert moment(body["updated_at"]) > earlier
    # Profile changes keep the session.
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 200


async def test_update_to_taken_username_is_409(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.patch(
        f"{USERS}/{alice.id}", json={"username": "BOB"}, headers=alice.headers
    )
    assert response.status_code == 409
    assert (await User.get(alice.user.id)).username == "alice"  # type: ignore[union-attr]


@pytest.mark.parametrize("change", [{"is_superuser": True}, {"is_active": False}])
async def test_no_privilege_escalation(
    client: httpx2.AsyncClient, alice: Account, change: dict[str, bool]
) -> None:
    response = await client.patch(f"{USERS}/{alice.id}", json=change, headers=alice.headers)
    assert response.status_code == 403
    stored = await User.get(alice.user.id)
    assert stored is not None
    assert (stored.is_superuser, stored.is_active) == (False, True)


async def test_cannot_change_someone_else(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.patch(
        f"{USERS}/{bob.id}", json={"full_name": "x"}, headers=alice.headers
    )
    assert response.status_code == 403
    assert (await User.get(bob.user.id)).full_name == "Bob"  # type: ignore[union-attr]


async def test_own_password_change_needs_current_password(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    login = "/api/v1/auth/login"
    other = await client.post(login, data={"username": "alice", "password": PASSWORD})
    other_login = {"Authorization": f"Bearer {other.json()['access_token']}"}
    url = f"{USERS}/{alice.id}"
    new = {"password": "Brand-new-pass-2"}
    assert (await client.patch(url, json=new, headers=alice.headers)).status_code == 400
    wrong = {**new, "current_password": "Wrong-pass-1"}
    assert (await client.patch(url, json=wrong, headers=alice.headers)).status_code == 400
    right = {**new, "current_password": PASSWORD}
    assert (await client.patch(url, json=right, headers=alice.headers)).status_code == 200
    # This login goes on; every other login of the account has ended.
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=other_login)).status_code == 401
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other.json()["refresh_token"]}
    )
    assert refresh.status_code == 401
    assert (
        await client.post(login, data={"username": "alice", "password": PASSWORD})
    ).status_code == 401
    assert (await client.post(login, data={"username": "alice", **new})).status_code == 200


async def test_superuser_manages_others(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    url = f"{USERS}/{alice.id}"
    reset = await client.patch(url, json={"password": "Reset-by-admin-3"}, headers=admin.headers)
    assert reset.status_code == 200
    promoted = await client.patch(url, json={"is_superuser": True}, headers=admin.headers)
    assert promoted.json()["is_superuser"] is True
    null_flag = await client.patch(url, json={"is_active": None}, headers=admin.headers)
    assert null_flag.status_code == 422


async def test_delete_user_cascades_to_items(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    now = utcnow()
    for owner in (alice, alice, bob):
        await Item(owner_id=owner.user.id, title="t", created_at=now, updated_at=now).insert()
    assert (await client.delete(f"{USERS}/{alice.id}", headers=bob.headers)).status_code == 403
    response = await client.delete(f"{USERS}/{alice.id}", headers=admin.headers)
    assert response.status_code == 204
    assert await User.get(alice.user.id) is None
    assert await Item.find({"owner_id": alice.user.id}).count() == 0
    assert await Item.find({"owner_id": bob.user.id}).count() == 1
    again = await client.delete(f"{USERS}/{alice.id}", headers=admin.headers)
    assert again.status_code == 404
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 401


async def test_embedded_server_supports_transactions(app: FastAPI) -> None:
    # The cascade above ran inside a transaction on this server.
    assert services_of(app).supports_transactions is True


async def test_a_stolen_access_token_cannot_take_the_account_over(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """The chain: change the email with the token alone, recover the password to the new
    address, reset it (logging the owner out). It must fail at its first step."""
    thief = {"Authorization": f"Bearer {alice.token}"}  # all the attacker has
    taken = await client.patch(
        f"{USERS}/{alice.id}", json={"email": "thief@example.com"}, headers=thief
    )
    assert taken.status_code == 400
    assert taken.json()["type"] == "urn:docstore:problem:current-password-required"
    stored = await User.get(alice.user.id)
    assert stored is not None
    assert stored.email == "alice@example.com"
    recovery = {"email": "thief@example.com"}
    assert (await client.post("/api/v1/auth/password-recovery", json=recovery)).status_code == 202
    assert await OutboxMessage.find({"to": "thief@example.com"}).count() == 0
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 200


async def test_an_email_change_notifies_the_old_address(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    change = {"email": "alice.new@example.com", "current_password": PASSWORD}
    response = await client.patch(f"{USERS}/{alice.id}", json=change, headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["email_verified"] is False
    [notice] = await OutboxMessage.find_all().to_list()
    assert notice.to == "alice@example.com"
    assert notice.kind == "email-changed"
    assert "alice.new@example.com" in notice.text


async def test_a_superuser_changes_an_email_without_the_owners_password(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    change = {"email": "alice.fixed@example.com"}
    response = await client.patch(f"{USERS}/{alice.id}", json=change, headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["email"] == "alice.fixed@example.com"
    assert [m.to for m in await OutboxMessage.find_all().to_list()] == ["alice@example.com"]


async def test_a_stolen_token_cannot_guess_the_password_freely(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """Wrong current_password guesses count like failed logins against the account."""
    url = f"{USERS}/{alice.id}"
    guesses = [
        await client.patch(
            url,
            json={"password": "Brand-new-pass-2", "current_password": f"Guess-{n}-x"},
            headers=alice.headers,
        )
        for n in range(7)
    ]
    assert [g.status_code for g in guesses] == [400] * 5 + [429] * 2
    right = {"password": "Brand-new-pass-2", "current_password": PASSWORD}
    assert (await client.patch(url, json=right, headers=alice.headers)).status_code == 429


async def test_open_sign_ups_are_throttled_per_client(mongodb_url: str, tmp_path: Any) -> None:
    """Each sign-up hashes a password and mails a welcome to any address it names."""
    settings = make_settings(mongodb_url, tmp_path, signup_max_per_client=3)
    async with app_with(settings) as (app, client):
        admin = await make_account(app, "root", superuser=True)

        async def sign_up(n: int, **headers: str) -> int:
            user = {"email": f"u{n}@example.com", "username": f"user{n}", "password": "Pass-word-1"}
            return (await client.post(USERS, json=user, headers=headers)).status_code

        assert [await sign_up(n) for n in range(4)] == [201, 201, 201, 429]
        assert await OutboxMessage.find({"kind": "welcome"}).count() == 3
        assert await sign_up(9, **admin.headers) == 201  # an administrator is not throttled


async def test_a_superuser_cannot_lock_themselves_out(
    client: httpx2.AsyncClient, admin: Account
) -> None:
    """It could be the last superuser: another one must do it."""
    url = f"{USERS}/{admin.id}"
    for change in ({"is_active": False}, {"is_superuser": False}):
        refused = await client.patch(url, json=change, headers=admin.headers)
        assert refused.status_code == 409
        assert refused.json()["type"] == "urn:docstore:problem:self-lockout"
    assert (await client.delete(url, headers=admin.headers)).status_code == 409
    me = (await client.get(f"{AUTH}/me", headers=admin.headers)).json()
    assert (me["is_active"], me["is_superuser"]) == (True, True)


async def test_a_burst_of_current_password_guesses_meets_the_limit(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, password_checks: list[str]
) -> None:
    """40 guesses at once with a stolen token: only the limit's worth reach bcrypt (each
    counted before its check), the rest are refused unchecked, and nothing changes."""
    url = f"{USERS}/{alice.id}"

    async def guess(n: int) -> int:
        change = {"email": f"thief{n}@example.com", "current_password": f"Guess-{n}-x"}
        return (await client.patch(url, json=change, headers=alice.headers)).status_code

    statuses = await asyncio.gather(*(guess(n) for n in range(40)))
    limit = services_of(app).settings.login_max_failures_per_account_client
    assert sorted(statuses) == [400] * limit + [429] * (40 - limit)
    assert len(password_checks) == limit
    stored = await User.get(alice.user.id)
    assert stored is not None
    assert stored.email == "alice@example.com"
    assert stored.hashed_password == alice.user.hashed_password
    assert await OutboxMessage.find_all().count() == 0

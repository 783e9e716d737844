"""Refresh tokens (rotation, reuse detection, grace), logout, and the sessions list."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2

from documents import Session
from tests.conftest import PASSWORD, Account, app_with, make_account, make_settings

AUTH = "/api/v1/auth"


async def log_in(client: httpx2.AsyncClient, agent: str = "test-agent") -> dict[str, Any]:
    response = await client.post(
        f"{AUTH}/login",
        data={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def without_grace(mongodb_url: str, tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    """An app whose spent refresh tokens are never honoured again, and alice on it."""
    settings = make_settings(mongodb_url, tmp_path, refresh_reuse_grace_s=0)
    async with app_with(settings) as (app, client):
        await make_account(app, "alice")
        yield client


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def refresh(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.post(f"{AUTH}/refresh", json={"refresh_token": token})


async def test_login_returns_a_refresh_token_stored_only_hashed(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    pair = await log_in(client)
    session_id, secret = pair["refresh_token"].split(".", 1)
    stored = await Session.get(session_id)
    assert stored is not None
    assert secret not in stored.model_dump_json()
    assert stored.user_agent == "test-agent"


async def test_refresh_rotates(client: httpx2.AsyncClient, alice: Account) -> None:
    first = await log_in(client)
    second = await refresh(client, first["refresh_token"])
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["user"]["username"] == "alice"
    assert (await client.get(f"{AUTH}/me", headers=bearer(pair))).status_code == 200
    third = await refresh(client, pair["refresh_token"])
    assert third.status_code == 200


async def test_reuse_after_the_grace_window_ends_the_session(
    mongodb_url: str, tmp_path: Path
) -> None:
    async with without_grace(mongodb_url, tmp_path) as client:
        first = await log_in(client)
        second = (await refresh(client, first["refresh_token"])).json()
        stolen = await refresh(client, first["refresh_token"])  # the spent token, again
        assert stolen.status_code == 401
        assert stolen.headers["www-authenticate"] == "Bearer"
        # The whole login is over: the newest tokens stop working too.
        assert (await refresh(client, second["refresh_token"])).status_code == 401
        assert (await client.get(f"{AUTH}/me", headers=bearer(second))).status_code == 401


async def test_a_lost_response_is_covered_by_the_grace_window(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    first = await log_in(client)
    lost = (await refresh(client, first["refresh_token"])).json()
    retried = await refresh(client, first["refresh_token"])
    assert retried.status_code == 200
    assert retried.json()["refresh_token"] == lost["refresh_token"]  # the same, not a new one
    assert (await refresh(client, lost["refresh_token"])).status_code == 200


async def test_a_spent_token_whose_successor_was_used_ends_the_login(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """Within the grace window too: R0 after R1 was redeemed is no lost response."""
    first = await log_in(client)
    second = (await refresh(client, first["refresh_token"])).json()
    third = (await refresh(client, second["refresh_token"])).json()
    stolen = await refresh(client, first["refresh_token"])
    assert stolen.status_code == 401
    # The whole login is over, its newest refresh and access tokens included.
    assert (await refresh(client, third["refresh_token"])).status_code == 401
    assert (await client.get(f"{AUTH}/me", headers=bearer(third))).status_code == 401


async def test_any_older_token_of_the_login_is_reuse(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    tokens = [(await log_in(client))["refresh_token"]]
    for _ in range(5):
        tokens.append((await refresh(client, tokens[-1])).json()["refresh_token"])
    assert (await refresh(client, tokens[1])).status_code == 401  # four refreshes ago
    assert (await refresh(client, tokens[-1])).status_code == 401  # the login has ended


async def test_a_forged_secret_for_a_known_session_revokes_nothing(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    pair = await log_in(client)
    session_id, family, _ = pair["refresh_token"].split(".")
    for forged in (f"{session_id}.{family[::-1]}.guess", f"{session_id}.guess"):
        assert (await refresh(client, forged)).status_code == 401
    assert (await refresh(client, pair["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_rotate_once(client: httpx2.AsyncClient, alice: Account) -> None:
    first = await log_in(client)
    responses = await asyncio.gather(*(refresh(client, first["refresh_token"]) for _ in range(5)))
    assert all(response.status_code == 200 for response in responses)
    assert len({response.json()["refresh_token"] for response in responses}) == 1


async def test_concurrent_refreshes_without_grace_exactly_one_succeeds(
    mongodb_url: str, tmp_path: Path
) -> None:
    async with without_grace(mongodb_url, tmp_path) as client:
        first = await log_in(client)
        responses = await asyncio.gather(
            *(refresh(client, first["refresh_token"]) for _ in range(5))
        )
        assert sorted(response.status_code for response in responses) == [200, 401, 401, 401, 401]


async def test_bad_refresh_tokens(client: httpx2.AsyncClient, alice: Account) -> None:
    pair = await log_in(client)
    session_id, secret = pair["refresh_token"].split(".", 1)
    for token in ("x", f"{session_id}.wrong", f"{'0' * 24}.{secret}", "nope.nope", "." * 5):
        assert (await refresh(client, token)).status_code == 401, token
    for body in ({}, {"refresh_token": ""}, {"refresh_token": 5}, {"refresh_token": "x" * 300}):
        response = await client.post(f"{AUTH}/refresh", json=body)
        assert response.status_code == 422
    assert (await refresh(client, pair["refresh_token"])).status_code == 200  # still good


async def test_logout_ends_this_login_only(client: httpx2.AsyncClient, alice: Account) -> None:
    one, two = await log_in(client), await log_in(client)
    assert (await client.post(f"{AUTH}/logout", headers=bearer(one))).status_code == 204
    assert (await client.get(f"{AUTH}/me", headers=bearer(one))).status_code == 401
    assert (await refresh(client, one["refresh_token"])).status_code == 401
    assert (await client.get(f"{AUTH}/me", headers=bearer(two))).status_code == 200


async def test_logout_all(client: httpx2.AsyncClient, alice: Account) -> None:
    one, two = await log_in(client), await log_in(client)
    assert (await client.post(f"{AUTH}/logout-all", headers=bearer(one))).status_code == 204
    for pair in (one, two):
        assert (await client.get(f"{AUTH}/me", headers=bearer(pair))).status_code == 401
        assert (await refresh(client, pair["refresh_token"])).status_code == 401
    assert (await client.get(f"{AUTH}/me", headers=alice.headers)).status_code == 401
    assert (await log_in(client))["access_token"]  # logging in again works


async def test_list_and_revoke_sessions(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    phone = await log_in(client, agent="phone")
    listed = await client.get(f"{AUTH}/sessions", headers=alice.headers)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [s["user_agent"] for s in items] == ["phone", "tests"]
    assert [s["current"] for s in items] == [False, True]
    phone_id = phone["refresh_token"].split(".")[0]
    assert (
        await client.delete(f"{AUTH}/sessions/{phone_id}", headers=bob.headers)
    ).status_code == 404
    assert (
        await client.delete(f"{AUTH}/sessions/{phone_id}", headers=alice.headers)
    ).status_code == 204
    assert (await client.get(f"{AUTH}/me", headers=bearer(phone))).status_code == 401
    assert (await client.delete(f"{AUTH}/sessions/nope", headers=alice.headers)).status_code == 422


async def test_deactivation_ends_refresh_too(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    pair = await log_in(client)
    await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )
    assert (await refresh(client, pair["refresh_token"])).status_code == 401

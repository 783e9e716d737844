"""Brute-force protection: failed logins per account and per client, kept in MongoDB."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from fastapi import FastAPI

from api.accounts import throttle
from documents import LoginAttempts
from tests.conftest import PASSWORD, Account, app_with, make_account, make_settings

LOGIN = "/api/v1/auth/login"


async def attempt(client: httpx2.AsyncClient, username: str, password: str) -> httpx2.Response:
    return await client.post(LOGIN, data={"username": username, "password": password})


async def test_account_is_throttled_after_repeated_failures(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    for _ in range(5):
        assert (await attempt(client, "alice", "Wrong-pass-1")).status_code == 401
    # Even the right password is refused now, and by email too: it is the same account.
    for login in ("alice", "ALICE@example.com"):
        throttled = await attempt(client, login, PASSWORD)
        assert throttled.status_code == 429
        assert throttled.headers["content-type"] == "application/problem+json"
        assert 1 <= int(throttled.headers["retry-after"]) <= 900
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": f"account:{alice.id}"})
    assert stored is not None
    assert stored["failures"] == 5


async def test_success_resets_the_account_counter(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    for _ in range(4):
        await attempt(client, "alice", "Wrong-pass-1")
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200
    for _ in range(4):
        assert (await attempt(client, "alice", "Wrong-pass-1")).status_code == 401
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200


async def test_unknown_accounts_are_throttled_like_real_ones(client: httpx2.AsyncClient) -> None:
    statuses = [(await attempt(client, "ghost", "Wrong-pass-1")).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


async def test_client_is_throttled_across_accounts(mongodb_url: str, tmp_path: Path) -> None:
    settings = make_settings(mongodb_url, tmp_path, login_max_failures_per_client=3)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        for name in ("a1", "a2", "a3"):
            assert (await attempt(client, name, "Wrong-pass-1")).status_code == 401
        assert (await attempt(client, alice.user.username, PASSWORD)).status_code == 429


async def test_window_expiry_lets_the_account_try_again(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    for _ in range(5):
        await attempt(client, "alice", "Wrong-pass-1")
    assert (await attempt(client, "alice", PASSWORD)).status_code == 429
    # Move the window into the past instead of sleeping through it.
    past = datetime(2000, 1, 1, tzinfo=UTC)
    await LoginAttempts.get_pymongo_collection().update_many({}, {"$set": {"window_ends": past}})
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200


async def test_a_burst_of_guesses_cannot_outrun_the_account_limit(
    client: httpx2.AsyncClient, alice: Account, password_checks: list[str]
) -> None:
    """40 wrong guesses at once against a limit of 5: each is counted before its check."""
    burst = await asyncio.gather(*(attempt(client, "alice", f"Wrong-{n}-A") for n in range(40)))
    statuses = sorted(response.status_code for response in burst)
    assert statuses == [401] * 5 + [429] * 35
    assert len(password_checks) == 5
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": f"account:{alice.id}"})
    assert stored is not None
    assert stored["failures"] == 5  # exact: the refused 35 were given back
    assert (await attempt(client, "alice", PASSWORD)).status_code == 429
    assert len(password_checks) == 5  # refused without a check


async def test_a_burst_cannot_outrun_the_client_limit(
    mongodb_url: str, tmp_path: Path, password_checks: list[str]
) -> None:
    settings = make_settings(mongodb_url, tmp_path, login_max_failures_per_client=5)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        password_checks.clear()  # the app's start-up warmed its dummy hash
        guesses = (attempt(client, f"user{n}", "Wrong-pass-1") for n in range(40))
        statuses = sorted(response.status_code for response in await asyncio.gather(*guesses))
        assert statuses == [401] * 5 + [429] * 35
        assert len(password_checks) == 5
        stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": "client:127.0.0.1"})
        assert stored is not None
        assert stored["failures"] == 5
        assert (await attempt(client, alice.user.username, PASSWORD)).status_code == 429


async def test_successes_do_not_use_up_the_client_limit(mongodb_url: str, tmp_path: Path) -> None:
    settings = make_settings(mongodb_url, tmp_path, login_max_failures_per_client=3)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        for _ in range(6):
            assert (await attempt(client, alice.user.username, PASSWORD)).status_code == 200
        stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": "client:127.0.0.1"})
        assert stored is not None
        assert stored["failures"] == 0


async def test_a_counter_another_tool_wrote_without_a_date_is_replaced(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """No window to count in, none that an upsert could open: it must not spin forever."""
    odd = [{"_id": f"account:{alice.id}", "failures": 2}, {"_id": "client:127.0.0.1", "x": 1}]
    await LoginAttempts.get_pymongo_collection().insert_many(odd)
    async with asyncio.timeout(10):
        assert (await attempt(client, "alice", "Wrong-pass-1")).status_code == 401
        assert (await attempt(client, "alice", PASSWORD)).status_code == 200
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": "client:127.0.0.1"})
    assert stored is not None
    assert (stored["failures"], stored["window_ends"] > datetime.now(UTC)) == (1, True)


async def test_a_give_back_never_lands_in_a_newer_window(app: FastAPI) -> None:
    """A refusal counted in a window that has since passed must not buy a guess in the next."""
    reserved = await throttle.reserve({"account:x": 5}, 900)
    newer = datetime(2100, 1, 1, tzinfo=UTC)
    await LoginAttempts.get_pymongo_collection().update_one(
        {"_id": "account:x"}, {"$set": {"failures": 3, "window_ends": newer}}
    )
    await throttle.give_back(reserved)
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": "account:x"})
    assert stored is not None
    assert stored["failures"] == 3

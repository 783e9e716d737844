"""Brute-force protection: failed logins per account and per client, kept in MongoDB."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from api.accounts import throttle
from documents import LoginAttempts
from tests.conftest import (
    PASSWORD,
    Account,
    app_with,
    client_from,
    make_account,
    make_settings,
)
from tests.conftest import login as attempt


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
    mongodb_url: str, tmp_path: Path, password_checks: list[str]
) -> None:
    """40 wrong guesses at once against a limit of 5: each is counted before its check.
    (The account-wide limit is raised out of the way: with 40 > 30, its refusals give
    back tight-key reservations at random and fewer than 5 would be checked.)"""
    settings = make_settings(mongodb_url, tmp_path, login_max_failures_per_account=1000)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        password_checks.clear()  # the app's start-up warmed its dummy hash
        guesses = (attempt(client, "alice", f"Wrong-{n}-A") for n in range(40))
        statuses = sorted(response.status_code for response in await asyncio.gather(*guesses))
        assert statuses == [401] * 5 + [429] * 35
        assert len(password_checks) == 5
        counters = LoginAttempts.get_pymongo_collection()
        stored = await counters.find_one({"_id": f"account:{alice.id}"})
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


NOW_ISH = datetime(2100, 1, 1, tzinfo=UTC)  # an open window, far from its end


@pytest.mark.parametrize(
    "odd",
    [
        {"failures": float("nan"), "window_ends": NOW_ISH},
        {"failures": [1, 2], "window_ends": NOW_ISH},
        {"failures": "x", "window_ends": NOW_ISH},
        {"failures": None, "window_ends": NOW_ISH},
        {"window_ends": NOW_ISH},
        {"failures": 1, "window_ends": [NOW_ISH]},
        {"failures": 1, "window_ends": "tomorrow"},
    ],
    ids=["nan", "array", "string", "null", "no-count", "window-array", "window-string"],
)
async def test_a_counter_another_tool_wrote_oddly_is_replaced_not_trusted(
    client: httpx2.AsyncClient, alice: Account, odd: dict[str, object]
) -> None:
    """Never a 500, never a count that cannot grow (NaN + 1 is NaN: unlimited guesses)."""
    key = f"account:{alice.id}@client:127.0.0.1"
    await LoginAttempts.get_pymongo_collection().insert_one({"_id": key, **odd})
    for _ in range(5):
        assert (await attempt(client, "alice", "Wrong-pass-1")).status_code == 401
    assert (await attempt(client, "alice", PASSWORD)).status_code == 429
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": key})
    assert stored is not None
    assert stored["failures"] == 5
    assert isinstance(stored["window_ends"], datetime)


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


async def test_concurrent_reservations_count_exactly_to_the_limit(app: FastAPI) -> None:
    """Straight at the counter, no hashing in between: 40 at once against a limit of 5,
    the key opened by this very burst."""
    outcomes = await asyncio.gather(
        *(throttle.reserve({"account:x": 5}, 900) for _ in range(40)), return_exceptions=True
    )
    reserved = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    refused = [o for o in outcomes if isinstance(o, throttle.TooManyAttempts)]
    assert (len(reserved), len(refused)) == (5, 35)
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": "account:x"})
    assert stored is not None
    assert stored["failures"] == 5


async def test_concurrent_reservations_on_two_keys_never_pass_either_limit(app: FastAPI) -> None:
    limits = {"account:x": 5, "client:y": 7}
    outcomes = await asyncio.gather(
        *(throttle.reserve(limits, 900) for _ in range(40)), return_exceptions=True
    )
    reserved = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    assert 1 <= len(reserved) <= 5
    assert all(isinstance(o, dict | throttle.TooManyAttempts) for o in outcomes)
    found = LoginAttempts.get_pymongo_collection().find()
    stored = {doc["_id"]: doc["failures"] async for doc in found}
    assert stored == {"account:x": len(reserved), "client:y": len(reserved)}


async def test_a_give_back_never_lands_in_the_window_a_reset_opened(app: FastAPI) -> None:
    """An attempt in flight while the owner resets the password (which forgets the
    account's failures) must not, on giving its reservation back, erase a failure
    counted after the reset."""
    in_flight = await throttle.reserve({"account:x": 5}, 900)
    await throttle.clear_account("x", 900, slack_s=10)
    await throttle.reserve({"account:x": 5}, 900)  # a guess after the reset
    await throttle.give_back(in_flight)
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": "account:x"})
    assert stored is not None
    assert stored["failures"] == 1


async def wrong_guesses_from(app: FastAPI, address: str, login: str, count: int) -> list[int]:
    async with client_from(app, address) as client:
        return [(await attempt(client, login, "Wrong-pass-1")).status_code for _ in range(count)]


async def test_a_strangers_failures_do_not_lock_the_owner_out(app: FastAPI, alice: Account) -> None:
    """The tight limit is the account from one address: 5 failures from an attacker's
    address refuse that address, not the owner signing in from theirs."""
    assert await wrong_guesses_from(app, "203.0.113.5", "alice", 6) == [401] * 5 + [429]
    async with client_from(app, "203.0.113.5") as attacker:
        assert (await attempt(attacker, "alice", PASSWORD)).status_code == 429
    async with client_from(app, "198.51.100.7") as owner:
        assert (await attempt(owner, "alice", PASSWORD)).status_code == 200
    counters = LoginAttempts.get_pymongo_collection()
    stored = await counters.find_one({"_id": f"account:{alice.id}"})
    assert stored is not None
    assert stored["failures"] == 5  # the owner's success left the account-wide count alone


async def test_many_addresses_share_the_account_wide_limit(
    mongodb_url: str, tmp_path: Path
) -> None:
    settings = make_settings(mongodb_url, tmp_path, login_max_failures_per_account=6)
    async with app_with(settings) as (app, _):
        await make_account(app, "alice")
        for n in range(3):
            assert await wrong_guesses_from(app, f"203.0.113.{n}", "alice", 2) == [401] * 2
        assert await wrong_guesses_from(app, "203.0.113.9", "alice", 1) == [429]
        async with client_from(app, "198.51.100.7") as owner:
            assert (await attempt(owner, "alice", PASSWORD)).status_code == 429


async def test_a_burst_from_many_addresses_cannot_outrun_the_account_wide_limit(
    app: FastAPI, alice: Account, password_checks: list[str]
) -> None:
    """40 addresses guess at once, one guess each: the default account-wide 30 holds."""

    async def guess(n: int) -> int:
        async with client_from(app, f"203.0.113.{n}") as client:
            return (await attempt(client, "alice", f"Wrong-{n}-A")).status_code

    statuses = sorted(await asyncio.gather(*(guess(n) for n in range(40))))
    assert statuses == [401] * 30 + [429] * 10
    assert len(password_checks) == 30
    stored = await LoginAttempts.get_pymongo_collection().find_one({"_id": f"account:{alice.id}"})
    assert stored is not None
    assert stored["failures"] == 30


async def test_an_ipv6_client_counts_as_its_whole_64_network(app: FastAPI, alice: Account) -> None:
    """One host gets a /64 to pick addresses from: a new address in it is no new client."""
    for n in range(1, 6):
        assert await wrong_guesses_from(app, f"2001:db8:0:7::{n}", "alice", 1) == [401]
    assert await wrong_guesses_from(app, "2001:db8:0:7::ffff", "alice", 1) == [429]
    async with client_from(app, "2001:db8:0:8::1") as elsewhere:
        assert (await attempt(elsewhere, "alice", PASSWORD)).status_code == 200


async def test_a_stolen_token_gets_five_guesses_however_many_addresses_it_uses(
    app: FastAPI, alice: Account
) -> None:
    """Wrong current passwords in PATCH count under the account, not account+address: the
    token holder cannot buy more guesses by moving. The owner still signs in."""
    statuses = []
    for n in range(5):
        async with client_from(app, f"203.0.113.{n}") as thief:
            for _ in range(2):
                guess = {"password": "Another-pass-9", "current_password": "Wrong-pass-1"}
                url = f"/api/v1/users/{alice.id}"
                statuses.append(
                    (await thief.patch(url, json=guess, headers=alice.headers)).status_code
                )
    assert statuses == [400] * 5 + [429] * 5
    async with client_from(app, "198.51.100.7") as owner:
        assert (await attempt(owner, "alice", PASSWORD)).status_code == 200


async def test_a_login_name_cannot_spell_another_accounts_counter(
    app: FastAPI, alice: Account
) -> None:
    """Unknown names are counted hashed: typing an account's id, or its id-and-address
    key, as a login name touches no counter of that account."""
    for name in (alice.id, f"account:{alice.id}", f"account:{alice.id}@client:127.0.0.1"):
        assert await wrong_guesses_from(app, "203.0.113.5", name, 6) == [401] * 5 + [429]
    counters = LoginAttempts.get_pymongo_collection()
    assert await counters.count_documents({"_id": {"$regex": alice.id}}) == 0
    async with client_from(app, "127.0.0.1") as owner:
        assert (await attempt(owner, "alice", PASSWORD)).status_code == 200

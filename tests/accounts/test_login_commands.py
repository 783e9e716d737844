"""A sign-in's database commands, counted (PyMongo command monitoring on a real server):
three on success, whatever the account's counters hold, and two on a wrong password."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from pymongo import InsertOne, UpdateOne

from api.accounts import passwords
from api.core import together
from documents import LoginAttempts, Session, User
from documents.base import utcnow
from tests.commands import recording
from tests.conftest import Account, app_with, login, make_account, make_settings, services_of


def names(commands: list[dict[str, Any]]) -> list[str]:
    return [command["name"] for command in commands]


async def counters() -> dict[str, int]:
    found = LoginAttempts.get_pymongo_collection().find({})
    return {doc["_id"]: doc["failures"] async for doc in found}


async def test_a_first_sign_in_takes_three_commands(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """No counter exists yet: the reservation opens them in the same one command."""
    with recording(services_of(app).settings.mongodb_db) as commands:
        response = await login(client, "alice")
    assert response.status_code == 200, response.text
    assert names(commands) == ["find", "update", "bulkWrite"]
    assert len(commands[1]["updates"]) == 3  # this address's, the account's, the client's
    assert set((await counters()).values()) == {0}  # reserved, then all given back
    session_id = response.json()["refresh_token"].split(".")[0]
    user = await User.get(alice.id)
    assert user is not None
    assert session_id in {str(listed) for listed in user.session_ids}
    assert await Session.get(session_id) is not None


async def test_signing_in_again_takes_three_commands(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    assert (await login(client, "alice")).status_code == 200
    with recording(services_of(app).settings.mongodb_db) as commands:
        again = await login(client, "alice")
    assert again.status_code == 200
    assert names(commands) == ["find", "update", "bulkWrite"]


async def test_a_sign_in_after_failures_clears_them_in_the_same_three(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    for _ in range(2):
        assert (await login(client, "alice", "Wrong-pass-1")).status_code == 401
    from_here = f"account:{alice.id}@client:127.0.0.1"
    assert (await counters())[from_here] == 2
    with recording(services_of(app).settings.mongodb_db) as commands:
        assert (await login(client, "alice")).status_code == 200
    assert names(commands) == ["find", "update", "bulkWrite"]
    stored = await counters()
    assert stored[from_here] == 0  # this address's failures: cleared by a success
    assert stored[f"account:{alice.id}"] == 2  # the account-wide ones: only by a reset


async def test_a_wrong_password_takes_three_commands_and_stays_counted(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """The user, the reservation, and the account's security log entry (one per counted
    failure: the throttle bounds them)."""
    with recording(services_of(app).settings.mongodb_db) as commands:
        assert (await login(client, "alice", "Wrong-pass-1")).status_code == 401
    assert names(commands) == ["find", "update", "insert"]
    assert set((await counters()).values()) == {1}


async def test_an_upgraded_hash_goes_in_the_same_three(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    services_of(app).settings.bcrypt_rounds = 5  # the accounts were hashed at 4
    try:
        with recording(services_of(app).settings.mongodb_db) as commands:
            assert (await login(client, "alice")).status_code == 200
    finally:
        services_of(app).settings.bcrypt_rounds = 4
    assert names(commands) == ["find", "update", "bulkWrite"]
    user = await User.get(alice.id)
    assert user is not None
    assert passwords.cost_of(user.hashed_password) == 5


@pytest.mark.parametrize("ends_in_s", [-60, 4])  # passed; closing (under 5 s)
async def test_a_window_passed_or_closing_is_counted_exactly(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, ends_in_s: int
) -> None:
    """A window at its end goes the slower way (a command of its own), which knows the
    exact window it counted in, so the give-back still lands there."""
    window_ends = utcnow() + timedelta(seconds=ends_in_s)
    from_here, account = f"account:{alice.id}@client:127.0.0.1", f"account:{alice.id}"
    await LoginAttempts.get_pymongo_collection().insert_many(
        [{"_id": key, "failures": 1, "window_ends": window_ends} for key in (from_here, account)]
    )
    assert (await login(client, "alice")).status_code == 200
    stored = await counters()
    # This address's failures are cleared; the account-wide one is given back its
    # reservation, so it holds what it held: a failure when its window is still open.
    assert (stored[from_here], stored[account]) == (0, 1 if ends_in_s > 0 else 0)


async def test_writes_go_one_collection_at_a_time_on_a_server_before_8(app: FastAPI) -> None:
    """The fallback for servers without client-level bulk writes: the same writes, in
    order, per collection."""
    sessions, users = Session.get_pymongo_collection(), User.get_pymongo_collection()
    writes: list[together.Write] = [
        InsertOne({"_id": "s1", "n": 1}, namespace=sessions.full_name),
        InsertOne({"_id": "u1", "n": 1}, namespace=users.full_name),
        UpdateOne({"_id": "u1"}, {"$inc": {"n": 1}}, namespace=users.full_name),
        UpdateOne({"_id": "s1"}, {"$inc": {"n": 5}}, namespace=sessions.full_name),
    ]
    await together._one_collection_at_a_time(sessions.database.client, writes)
    assert await sessions.find_one({"_id": "s1"}) == {"_id": "s1", "n": 6}
    assert await users.find_one({"_id": "u1"}) == {"_id": "u1", "n": 2}


def collections(commands: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["name"], str(c.get(c["name"], "admin"))) for c in commands]


CLOSING_PER_COLLECTION = [
    ("update", "login_attempts"),  # the attempt settled first
    ("insert", "sessions"),
    ("update", "users"),
    ("insert", "security_events"),  # logged once the login is open
]


async def test_a_server_before_8_gets_the_closing_writes_per_collection(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(together, "_takes_client_bulk_writes", lambda _: False)
    with recording(services_of(app).settings.mongodb_db) as commands:
        assert (await login(client, "alice")).status_code == 200
    opening = [("find", "users"), ("update", "login_attempts")]
    assert collections(commands) == opening + CLOSING_PER_COLLECTION
    assert set((await counters()).values()) == {0}


async def fail(app: FastAPI, times: int, **data: object) -> None:
    await services_of(app).client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": times},
            "data": {"failCommands": ["bulkWrite"], **data},
        }
    )


async def test_a_server_that_refuses_client_bulk_writes_is_written_per_collection(
    failing_server: str, tmp_path: Path
) -> None:
    """An 8.0 server whose feature compatibility version is older refuses the command
    (CommandNotSupported) though its wire version allows it: the sign-in goes on the
    other way, and later ones go that way at once."""
    settings = make_settings(failing_server, tmp_path)
    async with app_with(settings) as (app, client):
        await make_account(app, "alice")
        await fail(app, 1, errorCode=115)
        with recording(settings.mongodb_db) as commands:
            first, second = await login(client, "alice"), await login(client, "alice")
        assert (first.status_code, second.status_code) == (200, 200)
        opening = [("find", "users"), ("update", "login_attempts")]
        assert collections(commands) == [
            *opening,
            ("bulkWrite", "1"),
            *CLOSING_PER_COLLECTION,
            *opening,
            *CLOSING_PER_COLLECTION,
        ]
        assert set((await counters()).values()) == {0}


async def test_a_lost_connection_on_the_closing_write_is_a_503(
    failing_server: str, tmp_path: Path
) -> None:
    settings = make_settings(failing_server, tmp_path)
    async with app_with(settings) as (app, client):
        await make_account(app, "alice")
        await fail(app, 2, closeConnection=True)  # the write and its one retry
        lost = await login(client, "alice")
        assert lost.status_code == 503, lost.text
        assert lost.headers["retry-after"]
        assert (await login(client, "alice")).status_code == 200

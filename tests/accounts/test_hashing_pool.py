"""The API's password-hashing pool: its size, and sign-ins taking turns
at the database so a storm of them reaches it as the pool frees up."""

import asyncio
from pathlib import Path

import pytest

from api.accounts import passwords
from tests.commands import recording
from tests.conftest import app_with, login, make_account, make_settings


def test_the_api_leaves_a_core_to_everything_else() -> None:
    assert [passwords.api_threads(cores) for cores in (1, 2, 4, 8)] == [1, 1, 3, 7]


async def test_hashing_threads_is_how_many_threads_hash(mongodb_url: str, tmp_path: Path) -> None:
    async with app_with(make_settings(mongodb_url, tmp_path, hashing_threads=3)):
        assert (passwords._pool.threads, passwords._pool.executor._max_workers) == (3, 3)
    async with app_with(make_settings(mongodb_url, tmp_path, hashing_threads=None)):
        assert passwords._pool.executor._max_workers == passwords.api_threads()


async def test_a_burst_of_sign_ins_reaches_the_database_a_turn_at_a_time(
    mongodb_url: str, tmp_path: Path
) -> None:
    """With one hashing thread, a sign-in looks its account up and reserves its attempt
    only once the one before it has been checked: the look-ups are never all sent at
    once, ahead of hashes that will take seconds in a storm."""
    settings = make_settings(mongodb_url, tmp_path, hashing_threads=1)
    async with app_with(settings) as (app, client):
        for n in range(6):
            await make_account(app, f"user{n}")
        with recording(settings.mongodb_db) as commands, pytest.MonkeyPatch.context() as spy:
            real = passwords._verify

            def checked(password: str, hashed: str) -> bool:
                commands.append({"name": "check"})  # in the thread, as it runs
                return real(password, hashed)

            spy.setattr(passwords, "_verify", checked)
            sign_ins = [login(client, f"user{n}") for n in range(6)]
            statuses = [response.status_code for response in await asyncio.gather(*sign_ins)]
    assert statuses == [200] * 6
    steps = [_step(command) for command in commands if _step(command)]
    assert steps == ["look-up", "reservation", "check"] * 6


def _step(command: dict[str, object]) -> str | None:
    if command.get("find") == "users":
        return "look-up"
    if command.get("update") == "login_attempts":
        return "reservation"
    return "check" if command["name"] == "check" else None

"""The API's password-hashing pool: its size, its CPU priority, and sign-ins taking turns
at the database so a storm of them reaches it as the pool frees up."""

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest

from api.accounts import passwords
from tests.commands import recording
from tests.conftest import PASSWORD, app_with, make_account, make_settings

LOGIN = "/api/v1/auth/login"


def test_the_api_leaves_a_core_to_everything_else() -> None:
    assert [passwords.api_threads(cores) for cores in (1, 2, 4, 8)] == [1, 1, 3, 7]


async def test_hashing_threads_is_how_many_threads_hash(mongodb_url: str, tmp_path: Path) -> None:
    settings = make_settings(mongodb_url, tmp_path, hashing_threads=3)
    async with app_with(settings):
        assert passwords._threads == 3
        hashes = [passwords.hash_password(f"Pass-{n}-word", 4) for n in range(6)]
        await asyncio.gather(*hashes)
        assert len(_hashing_threads()) >= 3
    async with app_with(make_settings(mongodb_url, tmp_path)):
        assert passwords._threads == passwords.api_threads()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread scheduling is Linux's")
async def test_hashing_runs_at_idle_priority(mongodb_url: str, tmp_path: Path) -> None:
    async with app_with(make_settings(mongodb_url, tmp_path)):
        await passwords.hash_password("Pass-1-word", 4)
        threads = _hashing_threads()
        assert threads
        for thread in threads:
            assert thread.native_id is not None
            assert os.sched_getscheduler(thread.native_id) == os.SCHED_IDLE
            assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == 19


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
        with recording(settings.mongodb_db) as commands:
            sign_ins = [
                client.post(LOGIN, data={"username": f"user{n}", "password": PASSWORD})
                for n in range(6)
            ]
            statuses = [response.status_code for response in await asyncio.gather(*sign_ins)]
    assert statuses == [200] * 6
    steps = [
        "look-up" if command.get("find") == "users" else "reservation"
        for command in commands
        if command.get("find") == "users" or command.get("update") == "login_attempts"
    ]
    assert steps == ["look-up", "reservation"] * 6


def _hashing_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("bcrypt")]

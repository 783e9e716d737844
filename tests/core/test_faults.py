"""Killing the API process: what it acknowledged is whole, and no queued mail is lost."""

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx2
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import eventually, make_settings
from tests.mail.smtp import SmtpServer
from tests.serving import api_env, running_api


async def test_a_killed_api_process_leaves_nothing_half_written_and_loses_no_mail(
    mongodb_url: str, tmp_path: Path
) -> None:
    """SIGKILL `python -m api.server` while sign-ups (an account and its welcome email,
    in one transaction) are in flight. Every account then has exactly one welcome in the
    outbox, and a new process delivers each of them."""
    smtp = SmtpServer()
    smtp.start()
    settings = make_settings(mongodb_url, tmp_path)
    env = api_env(
        mongodb_url,
        settings.mongodb_db,
        tmp_path,
        LOG_LEVEL="ERROR",
        SIGNUP_MAX_PER_CLIENT="1000",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        SMTP_SECURITY="none",
        OUTBOX_POLL_S="0.05",
        OUTBOX_LEASE_S="1",  # a dead process's claimed messages come back soon
    )
    acknowledged: list[str] = []

    async def sign_up(client: httpx2.AsyncClient, n: int) -> None:
        user = {"email": f"u{n}@example.com", "username": f"user{n}", "password": "Pass-word-1"}
        try:
            response = await client.post("/api/v1/users", json=user)
        except httpx2.TransportError:
            return  # cut off by the kill: it may or may not have committed
        if response.status_code == 201:
            acknowledged.append(user["email"])

    client_db: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    db = client_db[settings.mongodb_db]
    try:
        async with (
            running_api(env) as (base, process),
            httpx2.AsyncClient(base_url=base, timeout=30) as client,
        ):
            storm = [asyncio.ensure_future(sign_up(client, n)) for n in range(60)]
            await eventually(lambda: _at_least(acknowledged, 10))
            process.send_signal(signal.SIGKILL)
            await asyncio.gather(*storm)
        # Commits the dead process had already sent are still being applied by the server
        # (they sit in its socket buffer): wait until the database stops changing.
        users, welcomes = await _settled(db)
        assert sorted(welcomes) == sorted(users)  # one welcome per account, none without
        assert set(acknowledged) <= users  # what it said was done, is
        assert len(acknowledged) < 60, "the kill came too late to test anything"
        print(f"{len(acknowledged)} sign-ups acknowledged, {len(users)} stored, all mailed")

        async def all_delivered() -> bool:
            delivered = {message["To"] for message in smtp.inbox.messages}
            return delivered == users

        async with running_api(env):  # a new process delivers what the dead one left
            await eventually(all_delivered)
            ids = [message["Message-ID"] for message in smtp.inbox.messages]
            # At least once: a message sent just before the kill may go again, with the
            # same Message-ID, so the receiving side can tell it is the same one.
            assert len(set(ids)) == len(users)
    finally:
        await client_db.drop_database(settings.mongodb_db)
        await client_db.close()
        smtp.stop()


async def _settled(db: AsyncDatabase[dict[str, Any]]) -> tuple[set[str], list[str]]:
    """Accounts and welcome recipients, once two readings a second apart agree."""
    previous: tuple[set[str], list[str]] | None = None
    async with asyncio.timeout(20):
        while True:
            users = {doc["email"] async for doc in db.users.find({}, {"email": 1})}
            welcomes = sorted([doc["to"] async for doc in db.outbox.find({"kind": "welcome"})])
            if (users, welcomes) == previous:
                return users, welcomes
            previous = (users, welcomes)
            await asyncio.sleep(1)


async def _at_least(items: list[str], count: int) -> bool:
    return len(items) >= count

"""Email through the durable outbox to a real SMTP server: welcome, reset, verification."""

import asyncio
import statistics
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from bson import json_util
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from api.accounts import passwords
from api.config import Settings
from api.core.queue import DurableQueue
from documents import ActionToken, Delivery, LoginAttempts, OutboxMessage, User
from documents.base import utcnow
from tests.conftest import (
    PASSWORD,
    Account,
    app_with,
    eventually,
    interleaved_timings,
    make_account,
    make_settings,
    services_of,
)
from tests.mail.smtp import SmtpServer, text_of, token_in

AUTH = "/api/v1/auth"
NEW_USER = {"email": "carol@example.com", "username": "carol", "password": "Secret-pass-1"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def mail_settings(mongodb_url: str, tmp_path: Path, port: int, **overrides: Any) -> Settings:
    return make_settings(
        mongodb_url,
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        outbox_worker=True,
        outbox_poll_s=0.05,
        outbox_backoff_s=0.05,
        **overrides,
    )


@pytest.fixture
async def mailing(
    mongodb_url: str, tmp_path: Path, smtp: SmtpServer
) -> AsyncIterator[tuple[FastAPI, httpx2.AsyncClient]]:
    async with app_with(mail_settings(mongodb_url, tmp_path, smtp.port)) as running:
        yield running


async def test_sign_up_sends_a_welcome_email(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    _, client = mailing
    assert (await client.post("/api/v1/users", json=NEW_USER)).status_code == 201
    [message] = await smtp.inbox.wait_for(1)
    assert message["To"] == "carol@example.com"
    assert message["Subject"] == "Welcome to Docstore"
    assert message["Message-ID"].endswith("@docstore>")
    assert "carol" in text_of(message)
    assert message.get_body(preferencelist=("html",)) is not None  # type: ignore[attr-defined]
    # The worker marks it sent just after the server took it.
    await _until(lambda m: m is not None and m.status == Delivery.sent)
    stored = await OutboxMessage.find_one({"to": "carol@example.com"})
    assert stored is not None
    assert stored.attempts == 1
    assert stored.message_id == message["Message-ID"]


async def test_password_reset_end_to_end(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    app, client = mailing
    alice = await make_account(app, "alice")
    asked = await client.post(f"{AUTH}/password-recovery", json={"email": "ALICE@example.com"})
    assert asked.status_code == 202
    [message] = await smtp.inbox.wait_for(1)
    token = token_in(message)
    assert f"reset-password?token={token}" in text_of(message)
    stored = await ActionToken.find_one({"user_id": alice.user.id})
    assert stored is not None
    assert token not in stored.model_dump_json()  # only its hash is kept
    new = "Recovered-pass-9"
    reset = await client.post(f"{AUTH}/reset-password", json={"token": token, "new_password": new})
    assert reset.status_code == 204
    login = f"{AUTH}/login"
    assert (
        await client.post(login, data={"username": "alice", "password": PASSWORD})
    ).status_code == 401
    assert (
        await client.post(login, data={"username": "alice", "password": new})
    ).status_code == 200
    assert (
        await client.get(f"{AUTH}/me", headers=alice.headers)
    ).status_code == 401  # sessions ended
    again = await client.post(f"{AUTH}/reset-password", json={"token": token, "new_password": new})
    assert again.status_code == 400


async def test_recovery_does_not_reveal_accounts(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    app, client = mailing
    await make_account(app, "alice")
    known = await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
    unknown = await client.post(f"{AUTH}/password-recovery", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    await smtp.inbox.wait_for(1)
    assert await OutboxMessage.find({"to": "nobody@example.com"}).count() == 0


async def test_recovery_takes_as_long_for_unknown_addresses(
    mongodb_url: str, tmp_path: Path, smtp: SmtpServer
) -> None:
    """The real account's token and email must not show: medians of 12 each, interleaved.
    (On the embedded server that work is already cheap; the floor covers slower servers.)"""
    limits = {"recovery_max_per_email": 50, "recovery_max_per_client": 50}
    settings = mail_settings(
        mongodb_url, tmp_path, smtp.port, recovery_response_floor_ms=200, **limits
    )
    async with app_with(settings) as (app, client):
        await make_account(app, "alice")
        known, unknown = await interleaved_timings(
            12,
            lambda email: client.post(f"{AUTH}/password-recovery", json={"email": email}),
            "alice@example.com",
            "nobody@example.com",
            202,
        )
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.8 <= ratio <= 1.25, ratio
    assert min(known + unknown) >= 0.2  # both wait out the floor, whatever work they did


@pytest.mark.parametrize("problem", ["forged", "expired", "wrong purpose"])
async def test_bad_reset_tokens(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer, problem: str
) -> None:
    app, client = mailing
    alice = await make_account(app, "alice")
    token = "forged-token"
    if problem != "forged":
        await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
        token = token_in((await smtp.inbox.wait_for(1))[0])
    if problem == "expired":
        past = datetime.now(UTC) - timedelta(minutes=1)
        await ActionToken.get_pymongo_collection().update_many({}, {"$set": {"expires_at": past}})
    url = f"{AUTH}/verify-email" if problem == "wrong purpose" else f"{AUTH}/reset-password"
    body = (
        {"token": token}
        if problem == "wrong purpose"
        else {"token": token, "new_password": "New-pass-12"}
    )
    response = await client.post(url, json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    stored = await User.get(alice.user.id)
    assert stored is not None
    assert stored.email_verified is False


async def test_recovery_is_throttled_per_address(
    mailing: tuple[FastAPI, httpx2.AsyncClient],
) -> None:
    _, client = mailing
    statuses = [
        (
            await client.post(f"{AUTH}/password-recovery", json={"email": "x@example.com"})
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]


async def test_email_verification(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    app, client = mailing
    alice = await make_account(app, "alice")
    asked = await client.post(f"{AUTH}/verify-email/request", headers=alice.headers)
    assert asked.status_code == 202
    token = token_in((await smtp.inbox.wait_for(1))[0])
    assert (await client.post(f"{AUTH}/verify-email", json={"token": token})).status_code == 204
    assert (await client.get(f"{AUTH}/me", headers=alice.headers)).json()["email_verified"] is True
    assert (await client.post(f"{AUTH}/verify-email", json={"token": token})).status_code == 400
    assert (await client.post(f"{AUTH}/verify-email/request")).status_code == 401


async def test_verifying_an_old_address_does_not_verify_a_new_one(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    app, client = mailing
    alice = await make_account(app, "alice")
    await client.post(f"{AUTH}/verify-email/request", headers=alice.headers)
    token = token_in((await smtp.inbox.wait_for(1))[0])
    changed = await client.patch(
        f"/api/v1/users/{alice.id}",
        json={"email": "new@example.com", "current_password": PASSWORD},
        headers=alice.headers,
    )
    assert changed.json()["email_verified"] is False
    await client.post(f"{AUTH}/verify-email", json={"token": token})
    assert (await client.get(f"{AUTH}/me", headers=alice.headers)).json()["email_verified"] is False


async def test_login_can_require_a_verified_email(
    mongodb_url: str, tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = mail_settings(mongodb_url, tmp_path, smtp.port, require_verified_email=True)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        login = {"username": "alice", "password": PASSWORD}
        refused = await client.post(f"{AUTH}/login", data=login)
        assert refused.status_code == 403
        await alice.user.set({"email_verified": True})
        assert (await client.post(f"{AUTH}/login", data=login)).status_code == 200


async def test_smtp_down_then_up_delivers_every_queued_mail_once(
    mongodb_url: str, tmp_path: Path
) -> None:
    later = SmtpServer()  # its port, nobody listening yet
    async with app_with(mail_settings(mongodb_url, tmp_path, later.port)) as (_, client):
        for n in range(3):
            user = {**NEW_USER, "email": f"carol{n}@example.com", "username": f"carol{n}"}
            assert (await client.post("/api/v1/users", json=user)).status_code == 201

        async def each_failed_twice() -> bool:
            failing = OutboxMessage.find({"attempts": {"$gte": 2}, "last_error": {"$ne": None}})
            return await failing.count() == 3

        await eventually(each_failed_twice)
        later.start()
        try:
            await later.inbox.wait_for(3)

            async def all_sent() -> bool:
                return await OutboxMessage.find({"status": Delivery.sent}).count() == 3

            await eventually(all_sent)
            await asyncio.sleep(0.3)  # several polls more: nothing goes twice
            delivered = sorted(message["To"] for message in later.inbox.messages)
            assert delivered == [f"carol{n}@example.com" for n in range(3)]
        finally:
            later.stop()


async def test_gives_up_after_the_last_attempt(mongodb_url: str, tmp_path: Path) -> None:
    nobody = SmtpServer()
    settings = mail_settings(mongodb_url, tmp_path, nobody.port, outbox_max_attempts=2)
    async with app_with(settings) as (_, client):
        await client.post("/api/v1/users", json=NEW_USER)
        await _until(lambda m: m is not None and m.status == Delivery.dead)


async def test_a_dead_workers_message_is_delivered_once_after_its_lease(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    # A worker claimed this message and died before sending: its lease must lapse first.
    lease_ends = datetime.now(UTC) + timedelta(seconds=0.5)
    await OutboxMessage(
        kind="test",
        to="x@example.com",
        subject="orphan",
        text="t",
        html="<p>t</p>",
        message_id="<orphan@docstore>",
        status=Delivery.sending,
        attempts=1,
        lease_until=lease_ends,
        leased_by="worker-dead",
    ).insert()
    await asyncio.sleep(0.3)
    assert smtp.inbox.messages == []  # still leased
    [message] = await smtp.inbox.wait_for(1)
    assert message["Message-ID"] == "<orphan@docstore>"

    async def settled() -> bool:
        stored = await OutboxMessage.find_one({"message_id": "<orphan@docstore>"})
        return stored is not None and stored.status == Delivery.sent

    await eventually(settled)
    await asyncio.sleep(0.3)
    assert len(smtp.inbox.messages) == 1  # exactly one copy
    stored = await OutboxMessage.find_one({"message_id": "<orphan@docstore>"})
    assert stored is not None
    assert stored.attempts == 2


async def test_development_transport_writes_eml_files(mongodb_url: str, tmp_path: Path) -> None:
    async with app_with(make_settings(mongodb_url, tmp_path, outbox_worker=True)) as (_, client):
        assert (await client.post("/api/v1/users", json=NEW_USER)).status_code == 201
        folder = tmp_path / "mail"

        async def written() -> bool:
            return folder.is_dir() and any(folder.glob("*.eml"))

        await eventually(written)
        [eml] = list(folder.glob("*.eml"))
        assert b"Subject: Welcome to Docstore" in eml.read_bytes()


async def _until(check: Any) -> None:
    """Until `check` holds for the outbox message to carol (the worker changes it)."""

    async def holds() -> bool:
        return bool(check(await OutboxMessage.find_one({"to": "carol@example.com"})))

    await eventually(holds)


async def test_verification_requests_are_throttled_per_account(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    ask = f"{AUTH}/verify-email/request"
    statuses = [(await client.post(ask, headers=alice.headers)).status_code for _ in range(5)]
    assert statuses == [202, 202, 202, 429, 429]
    assert await OutboxMessage.count() == 3  # the refused ones queued nothing


async def test_verification_requests_are_throttled_per_client(
    mongodb_url: str, tmp_path: Path
) -> None:
    settings = make_settings(mongodb_url, tmp_path, verification_max_per_client=2)
    async with app_with(settings) as (app, client):
        accounts = [await make_account(app, name) for name in ("alice", "bob", "carol")]
        statuses = [
            (await client.post(f"{AUTH}/verify-email/request", headers=a.headers)).status_code
            for a in accounts
        ]
        assert statuses == [202, 202, 429]
        assert await OutboxMessage.count() == 2


async def test_a_confirmed_address_gets_a_202_and_no_email(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    await alice.user.set({"email_verified": True})
    for _ in range(5):
        answer = await client.post(f"{AUTH}/verify-email/request", headers=alice.headers)
        assert answer.status_code == 202
        assert "no email was sent" in answer.json()["detail"]
    assert await OutboxMessage.count() == 0


async def _documents_holding(app: FastAPI, needle: str) -> list[str]:
    """Every document, in every collection of the app's database, whose BSON holds `needle`."""
    services = services_of(app)
    database = services.client[services.settings.mongodb_db]
    found = []
    for name in await database.list_collection_names():
        async for document in database[name].find():
            if needle in json_util.dumps(document):
                found.append(f"{name}/{document['_id']}")
    return found


async def test_no_usable_token_rests_in_the_database(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """Queued, the reset token is sealed; sent, the body is gone. Read access to the
    database (or a backup) never yields a token that works."""
    recovery = {"email": "alice@example.com"}
    assert (await client.post(f"{AUTH}/password-recovery", json=recovery)).status_code == 202
    worker = services_of(app).get(DurableQueue)
    [queued] = await OutboxMessage.find_all().to_list()
    assert queued.secret is not None
    token = worker.sealer.open(queued.secret, f"{queued.message_id}\n{queued.to}")  # server only
    assert await _documents_holding(app, token) == []
    assert await worker.deliver_one()  # to the development transport (a file)
    assert await _documents_holding(app, token) == []
    sent = await OutboxMessage.get(queued.id)
    assert sent is not None
    assert (sent.status, sent.text, sent.html, sent.secret) == (Delivery.sent, "", "", None)
    assert sent.purge_at is not None  # the TTL index removes it after the retention
    reset = {"token": token, "new_password": "Brand-new-pass-2"}
    assert (await client.post(f"{AUTH}/reset-password", json=reset)).status_code == 204


async def test_settled_messages_expire_by_a_ttl_index(app: FastAPI) -> None:
    indexes = await OutboxMessage.get_pymongo_collection().index_information()
    ttl = [spec for spec in indexes.values() if spec["key"] == [("purge_at", 1)]]
    assert len(ttl) == 1
    assert ttl[0]["expireAfterSeconds"] == 0


async def test_metrics_count_the_outbox_at_most_every_few_seconds(
    mongodb_url: str, tmp_path: Path
) -> None:
    pending = 'docstore_outbox_messages{status="pending"}'
    async with app_with(make_settings(mongodb_url, tmp_path)) as (app, client):  # fresh counts
        alice = await make_account(app, "alice")
        assert f"{pending} 0.0" in (await client.get("/metrics")).text
        await client.post(f"{AUTH}/verify-email/request", headers=alice.headers)
        assert await OutboxMessage.count() == 1
        assert f"{pending} 0.0" in (await client.get("/metrics")).text  # counted moments ago


async def test_a_queued_token_cannot_be_redirected(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """Someone who can write the outbox points a queued reset at their own address: the
    sealed token no longer opens, and nothing is sent."""
    assert (
        await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
    ).status_code == 202
    await OutboxMessage.get_pymongo_collection().update_many({}, {"$set": {"to": "x@evil.test"}})
    mail_dir = services_of(app).settings.data_dir / "mail"
    before = set(mail_dir.glob("*.eml")) if mail_dir.exists() else set()
    assert await services_of(app).get(DurableQueue).deliver_one()
    [message] = await OutboxMessage.find_all().to_list()
    assert message.status == Delivery.pending  # failed, to be retried, then dead
    assert "does not open" in (message.last_error or "")
    assert (set(mail_dir.glob("*.eml")) if mail_dir.exists() else set()) == before


async def test_a_reset_mailed_to_the_old_address_dies_with_an_email_change(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    """Someone reading the old mailbox must not reset the password after the owner moved."""
    app, client = mailing
    alice = await make_account(app, "alice")
    await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
    token = token_in((await smtp.inbox.wait_for(1))[0])
    changed = await client.patch(
        f"/api/v1/users/{alice.id}",
        json={"email": "alice.moved@example.com", "current_password": PASSWORD},
        headers=alice.headers,
    )
    assert changed.status_code == 200
    reset = {"token": token, "new_password": "Taken-over-9"}
    assert (await client.post(f"{AUTH}/reset-password", json=reset)).status_code == 400
    login = {"username": "alice", "password": PASSWORD}
    assert (await client.post(f"{AUTH}/login", data=login)).status_code == 200


async def test_a_reset_spends_every_other_reset_token_of_the_account(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    app, client = mailing
    await make_account(app, "alice")
    for _ in range(2):
        await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
    first, second = (token_in(message) for message in await smtp.inbox.wait_for(2))
    used = {"token": first, "new_password": "Recovered-pass-9"}
    assert (await client.post(f"{AUTH}/reset-password", json=used)).status_code == 204
    other = {"token": second, "new_password": "Recovered-pass-8"}
    assert (await client.post(f"{AUTH}/reset-password", json=other)).status_code == 400


async def test_recovery_counts_an_account_however_its_address_is_spelled(
    mailing: tuple[FastAPI, httpx2.AsyncClient],
) -> None:
    """The lookup matches "straße" to "strasse" (a collation, not `lower()`), so the limit
    must count the account: 3 per account, not 3 per spelling."""
    app, client = mailing
    await make_account(app, "strasse")
    spellings = ["strasse@example.com", "straße@example.com"] * 2
    statuses = [
        (await client.post(f"{AUTH}/password-recovery", json={"email": email})).status_code
        for email in spellings
    ]
    assert statuses == [202, 202, 202, 429]


async def test_messages_from_before_sealing_are_settled_at_start_up(
    mongodb_url: str, tmp_path: Path
) -> None:
    """A database written by an older Docstore: sent and dead bodies held raw tokens and
    never expired. The first start of this one settles them."""
    settings = make_settings(mongodb_url, tmp_path)
    token = "raw-token-from-an-older-release"

    def legacy(kind: str, status: Delivery) -> dict[str, Any]:
        body = f"send this token to the API: {token}" if kind != "welcome" else "Welcome"
        return {
            "kind": kind, "to": "a@example.com", "subject": "s", "text": body, "html": body,
            "message_id": f"<{kind}-{status}@docstore>", "status": status.value,
        }  # fmt: skip

    async with AsyncMongoClient(mongodb_url) as raw:
        await raw[settings.mongodb_db].outbox.insert_many(
            [
                legacy("password-reset", Delivery.sent),
                legacy("verify-email", Delivery.dead),
                legacy("welcome", Delivery.dead),
                legacy("password-reset", Delivery.pending),  # still to send: it stays
            ]
        )
    async with app_with(settings):
        left = {
            (doc["kind"], doc["status"]): doc
            async for doc in OutboxMessage.get_pymongo_collection().find()
        }
    assert set(left) == {
        ("password-reset", "sent"),
        ("welcome", "dead"),
        ("password-reset", "pending"),
    }
    sent, dead = left["password-reset", "sent"], left["welcome", "dead"]
    assert (sent["text"], sent["html"]) == ("", "")
    assert dead["text"] == "Welcome"  # nothing secret: kept for --retry-dead
    assert sent["purge_at"] is not None
    assert dead["purge_at"] is not None
    assert left["password-reset", "pending"].get("purge_at") is None


async def test_a_reset_the_server_was_too_busy_for_leaves_its_token_usable(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = mailing
    await make_account(app, "alice")
    await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
    token = token_in((await smtp.inbox.wait_for(1))[0])
    reset = {"token": token, "new_password": "Recovered-pass-9"}
    with monkeypatch.context() as busy:  # every hashing place taken, none may wait
        busy.setattr(passwords, "_pool", passwords._Pool(passwords._pool.threads, 0))
        busy.setattr(passwords, "_in_pool_now", passwords._pool.threads)
        refused = await client.post(f"{AUTH}/reset-password", json=reset)
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert (await client.post(f"{AUTH}/reset-password", json=reset)).status_code == 204


async def test_a_reset_token_mailed_before_an_email_change_does_not_work_after_it(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    """A token issued while the change commits (so the change could not void it) is bound
    to the address it was mailed to."""
    app, client = mailing
    alice = await make_account(app, "alice")
    await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
    token = token_in((await smtp.inbox.wait_for(1))[0])
    await User.get_pymongo_collection().update_one(
        {"_id": alice.user.id}, {"$set": {"email": "alice.moved@example.com"}}
    )
    reset = {"token": token, "new_password": "Taken-over-9"}
    assert (await client.post(f"{AUTH}/reset-password", json=reset)).status_code == 400


async def test_a_reset_lifts_the_lock_others_ran_up_on_the_account(
    mailing: tuple[FastAPI, httpx2.AsyncClient], smtp: SmtpServer
) -> None:
    """Many addresses can use up the account-wide limit; the owner, proving they hold the
    mailbox, gets back in without waiting for the window."""
    app, client = mailing
    alice = await make_account(app, "alice")
    later = utcnow() + timedelta(hours=1)
    await LoginAttempts.get_pymongo_collection().insert_many(
        [
            {"_id": f"account:{alice.id}", "failures": 30, "window_ends": later},
            {"_id": f"account:{alice.id}@client:127.0.0.1", "failures": 5, "window_ends": later},
        ]
    )
    login = {"username": "alice", "password": PASSWORD}
    assert (await client.post(f"{AUTH}/login", data=login)).status_code == 429
    await client.post(f"{AUTH}/password-recovery", json={"email": "alice@example.com"})
    token = token_in((await smtp.inbox.wait_for(1))[0])
    new = {"token": token, "new_password": "Recovered-pass-9"}
    assert (await client.post(f"{AUTH}/reset-password", json=new)).status_code == 204
    login["password"] = "Recovered-pass-9"
    assert (await client.post(f"{AUTH}/login", data=login)).status_code == 200


async def test_a_message_queued_before_channels_is_still_sent(
    mongodb_url: str, tmp_path: Path
) -> None:
    """An outbox entry an older Docstore wrote (no `channel`, as one still running in a
    rolling deploy writes them) is the email channel's: the queue sends it like any other."""
    settings = make_settings(mongodb_url, tmp_path)
    now = datetime.now(UTC)
    older = {
        "kind": "welcome", "to": "a@example.com", "subject": "Hello", "text": "Hi",
        "html": "<p>Hi</p>", "message_id": "<older@docstore>", "status": "pending",
        "attempts": 0, "next_attempt_at": now, "created_at": now,
    }  # fmt: skip
    async with AsyncMongoClient(mongodb_url) as raw:
        await raw[settings.mongodb_db].outbox.insert_one(older)
    async with app_with(settings) as (app, _):
        assert await services_of(app).get(DurableQueue).deliver_one()
        stored = await OutboxMessage.find_one({"message_id": "<older@docstore>"})
    assert stored is not None
    assert (stored.channel, stored.status) == ("email", Delivery.sent)
    assert list((settings.data_dir / "mail").glob("older_docstore.eml"))

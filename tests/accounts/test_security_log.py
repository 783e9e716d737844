"""The security log: what it records, who reads it, what it never holds, how it stays bounded."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx2
from bson import ObjectId, Regex, json_util
from fastapi import FastAPI

from api.accounts import action_tokens
from documents import Purpose, SecurityEvent, User
from documents.base import utcnow
from tests.conftest import PASSWORD, Account, client_from, login, services_of, walk_pages

AUTH = "/api/v1/auth"
EVENTS = f"{AUTH}/events"
NEW_PASSWORD = "Another-pass-42"


def of(account: Account) -> str:
    return f"/api/v1/users/{account.id}/events"


async def events(
    client: httpx2.AsyncClient, headers: dict[str, str], url: str = EVENTS
) -> list[Any]:
    return await walk_pages(client, url, headers, limit=3)


async def stored_events(user_id: Any) -> list[dict[str, Any]]:
    found = SecurityEvent.get_pymongo_collection().find({"user_id": ObjectId(str(user_id))})
    return await found.sort([("at", 1), ("_id", 1)]).to_list()  # oldest first


async def test_sign_ins_and_failed_ones_are_logged_with_where_they_came_from(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    agent = {"User-Agent": "Firefox/140 (test)"}
    wrong = await client.post(
        f"{AUTH}/login", data={"username": "alice", "password": "wrong"}, headers=agent
    )
    assert wrong.status_code == 401
    right = await client.post(
        f"{AUTH}/login", data={"username": "ALICE", "password": PASSWORD}, headers=agent
    )
    assert right.status_code == 200
    headers = {"Authorization": f"Bearer {right.json()['access_token']}"}
    logged = await events(client, headers)
    assert [e["type"] for e in logged] == ["login.succeeded", "login.failed"]
    assert {e["user_agent"] for e in logged} == {"Firefox/140 (test)"}
    assert {e["client_ip"] for e in logged} == {"127.0.0.1"}
    assert logged[1]["detail"] == {"reason": "password"}
    sessions = (await client.get(f"{AUTH}/sessions", headers=headers)).json()["items"]
    current = next(s["id"] for s in sessions if s["current"])
    assert logged[0]["detail"] == {"session_id": current}
    assert set(logged[0]) == {"id", "type", "at", "client_ip", "user_agent", "detail"}


async def test_a_refused_sign_in_with_the_right_password_is_a_failure_too(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    url = f"/api/v1/users/{alice.id}"
    assert (await client.patch(url, json={"is_active": False}, headers=admin.headers)).is_success
    for _ in range(3):  # not counted (the right password), so logged once per window
        assert (await login(client, "alice")).status_code == 400
    back = {"is_active": True, "is_superuser": True}
    assert (await client.patch(url, json=back, headers=admin.headers)).is_success
    logged = await events(client, admin.headers, of(alice))
    assert [(e["type"], e["detail"]) for e in reversed(logged)] == [
        ("account.deactivated", {"by": admin.id}),
        ("login.failed", {"reason": "inactive-user"}),
        ("account.reactivated", {"by": admin.id}),
        ("account.role_changed", {"is_superuser": True, "by": admin.id}),
    ]


async def test_only_a_password_login_reads_its_own_log(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    made = await client.post(
        f"{AUTH}/tokens", json={"name": "ci", "scopes": ["account:read"]}, headers=alice.headers
    )
    personal = {"Authorization": f"Bearer {made.json()['token']}"}
    assert (await client.get(EVENTS, headers=personal)).status_code == 403
    assert (await client.get(of(alice), headers=personal)).status_code == 403
    assert (await client.get(EVENTS)).status_code == 401
    assert (await client.get(EVENTS, headers=alice.headers)).status_code == 200


async def test_superusers_read_anyones_log_and_nobody_else_does(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    assert (await login(client, "alice", "wrong")).status_code == 401
    assert [e["type"] for e in await events(client, admin.headers, of(alice))] == ["login.failed"]
    assert [e["type"] for e in await events(client, alice.headers, of(alice))] == ["login.failed"]
    assert (await client.get(of(alice), headers=bob.headers)).status_code == 403
    assert await events(client, bob.headers) == []  # bob's own log has nothing of alice's
    nobody = f"/api/v1/users/{ObjectId()}/events"
    assert (await client.get(nobody, headers=admin.headers)).status_code == 404


async def test_every_change_to_an_account_is_logged(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    second = (await login(client, "alice")).json()
    other = {"Authorization": f"Bearer {second['access_token']}"}
    assert (await client.post(f"{AUTH}/logout", headers=other)).status_code == 204
    assert (await login(client, "alice")).status_code == 200  # a third login
    sessions = (await client.get(f"{AUTH}/sessions", headers=alice.headers)).json()["items"]
    third_id = next(s["id"] for s in sessions if s["id"] != alice.session_id)
    ended = await client.delete(f"{AUTH}/sessions/{third_id}", headers=alice.headers)
    assert ended.status_code == 204
    made = await client.post(
        f"{AUTH}/tokens", json={"name": "ci", "scopes": ["items:read"]}, headers=alice.headers
    )
    token_id = made.json()["id"]
    revoked = await client.delete(f"{AUTH}/tokens/{token_id}", headers=alice.headers)
    assert revoked.status_code == 204
    me = f"/api/v1/users/{alice.id}"
    change = {"email": "alice2@example.com", "current_password": PASSWORD}
    assert (await client.patch(me, json=change, headers=alice.headers)).status_code == 200
    change = {"password": NEW_PASSWORD, "current_password": PASSWORD}
    assert (await client.patch(me, json=change, headers=alice.headers)).status_code == 200
    user = await User.get(alice.user.id)
    assert user is not None
    verify = await action_tokens.issue(user, Purpose.verify_email, timedelta(hours=1), None)
    assert (await client.post(f"{AUTH}/verify-email", json={"token": verify})).status_code == 204
    # A refresh token of the third login, spent twice: reuse.
    rotated = await client.post(f"{AUTH}/refresh", json={"refresh_token": second["refresh_token"]})
    assert rotated.status_code == 401  # its login ended: not reuse, nothing logged
    fourth = (await login(client, "alice", NEW_PASSWORD)).json()
    first_refresh = next_refresh = fourth["refresh_token"]
    for _ in range(2):  # spent, and its successor spent too: the first is not the latest
        rotated = await client.post(f"{AUTH}/refresh", json={"refresh_token": next_refresh})
        assert rotated.status_code == 200
        next_refresh = rotated.json()["refresh_token"]
    reused = await client.post(f"{AUTH}/refresh", json={"refresh_token": first_refresh})
    assert reused.status_code == 401
    reset = await action_tokens.issue(user, Purpose.reset_password, timedelta(hours=1), None)
    body = {"token": reset, "new_password": "Third-pass-99"}
    assert (await client.post(f"{AUTH}/reset-password", json=body)).status_code == 204
    five = (await login(client, "alice", "Third-pass-99")).json()
    five_headers = {"Authorization": f"Bearer {five['access_token']}"}
    assert (await client.post(f"{AUTH}/logout-all", headers=five_headers)).status_code == 204

    logged = await events(client, admin.headers, of(alice))
    assert [e["type"] for e in reversed(logged)] == [
        "login.succeeded",
        "session.ended",
        "login.succeeded",
        "session.ended",
        "token.created",
        "token.revoked",
        "email.changed",
        "password.changed",
        "email.verified",
        "login.succeeded",
        "refresh.reuse_detected",
        "password.reset",
        "login.succeeded",
        "sessions.ended_all",
    ]
    details = {e["type"]: e["detail"] for e in reversed(logged)}  # the latest of each type
    assert details["token.created"] == {
        "token_id": token_id,
        "name": "ci",
        "scopes": ["items:read"],
    }
    assert details["token.revoked"] == {"token_id": token_id}
    assert details["email.changed"] == {"from": "alice@example.com", "to": "alice2@example.com"}
    assert details["session.ended"] == {"session_id": third_id}
    assert details["email.verified"] == {"email": "alice2@example.com"}
    assert details["refresh.reuse_detected"] == {"session_id": first_refresh.split(".")[0]}


async def test_a_superusers_change_names_them(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    me = f"/api/v1/users/{alice.id}"
    assert (
        await client.patch(me, json={"password": NEW_PASSWORD}, headers=admin.headers)
    ).is_success
    logged = await events(client, admin.headers, of(alice))
    assert [(e["type"], e["detail"]) for e in logged] == [("password.changed", {"by": admin.id})]


async def test_no_secret_ever_reaches_the_log(client: httpx2.AsyncClient, alice: Account) -> None:
    """Every secret this account's requests carried, looked for in what is stored."""
    secrets = [PASSWORD, "wrong-guess-1", NEW_PASSWORD, "Third-pass-99", alice.token]
    await login(client, "alice", "wrong-guess-1")
    pair = (await login(client, "alice")).json()
    secrets.append(pair["access_token"])
    for refresh in (alice.refresh_token, pair["refresh_token"]):  # <session id>.<family>.<secret>
        secrets += refresh.split(".")[1:]
    made = await client.post(
        f"{AUTH}/tokens", json={"name": "ci", "scopes": ["items:read"]}, headers=alice.headers
    )
    secrets.append(made.json()["token"].split("_", 2)[2])  # dsk_<id>_<secret>
    me = f"/api/v1/users/{alice.id}"
    change = {"password": NEW_PASSWORD, "current_password": PASSWORD}
    assert (await client.patch(me, json=change, headers=alice.headers)).status_code == 200
    user = await User.get(alice.user.id)
    assert user is not None
    secrets.append(user.hashed_password)
    reset = await action_tokens.issue(user, Purpose.reset_password, timedelta(hours=1), None)
    secrets.append(reset)
    body = {"token": reset, "new_password": "Third-pass-99"}
    assert (await client.post(f"{AUTH}/reset-password", json=body)).status_code == 204
    logged = await stored_events(alice.id)
    assert [e["type"] for e in logged] == [
        "login.failed", "login.succeeded", "token.created", "password.changed", "password.reset"
    ]  # fmt: skip
    stored = json_util.dumps(logged)
    for secret in secrets:
        assert secret not in stored
    for jwt in (alice.token, pair["access_token"]):
        assert jwt.split(".")[2] not in stored  # nor a token's signature


async def test_a_flood_of_failed_logins_writes_a_bounded_log(app: FastAPI, alice: Account) -> None:
    """200 wrong passwords at once from 20 addresses: logged as the throttle lets them
    through (the account's limit per window), then once as throttled, not 200 times;
    50 more change nothing."""
    settings = services_of(app).settings

    async def guesses(address: str, tag: str, count: int) -> list[int]:
        async with client_from(app, address) as client:
            answers = await asyncio.gather(
                *(login(client, "alice", f"{tag}-{n}") for n in range(count))
            )
        return [answer.status_code for answer in answers]

    burst = await asyncio.gather(*(guesses(f"198.51.100.{n}", "guess", 10) for n in range(20)))
    assert 429 in {status for statuses in burst for status in statuses}
    stored = await stored_events(alice.id)
    failed = [e for e in stored if e["type"] == "login.failed"]
    throttled = [e for e in stored if e["type"] == "login.throttled"]
    assert 1 <= len(failed) <= settings.login_max_failures_per_account
    assert 1 <= len(throttled) <= 2  # one a window (the burst may straddle two)
    more = await asyncio.gather(*(guesses(f"203.0.113.{n}", "more", 5) for n in range(10)))
    assert {status for statuses in more for status in statuses} == {429}
    assert len(await stored_events(alice.id)) <= len(stored) + 1


async def test_concurrent_ends_of_one_login_log_it_once(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    pair = (await login(client, "alice")).json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    await asyncio.gather(*(client.post(f"{AUTH}/logout", headers=headers) for _ in range(5)))
    spent = (await login(client, "alice")).json()["refresh_token"]
    latest = spent
    for _ in range(2):
        latest = (await client.post(f"{AUTH}/refresh", json={"refresh_token": latest})).json()[
            "refresh_token"
        ]
    reuses = await asyncio.gather(
        *(client.post(f"{AUTH}/refresh", json={"refresh_token": spent}) for _ in range(5))
    )
    assert {r.status_code for r in reuses} == {401}
    kinds = [e["type"] for e in await stored_events(alice.id)]
    assert kinds.count("session.ended") == 1
    assert kinds.count("refresh.reuse_detected") == 1


async def test_a_wrong_current_password_is_logged(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    change = {"password": NEW_PASSWORD, "current_password": "not-it"}
    response = await client.patch(f"/api/v1/users/{alice.id}", json=change, headers=alice.headers)
    assert response.status_code == 400
    assert [e["type"] for e in await stored_events(alice.id)] == ["password.check_failed"]


async def test_an_entry_another_tool_mangled_is_skipped_not_a_500(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    await login(client, "alice", "wrong")
    now = utcnow()
    raw = SecurityEvent.get_pymongo_collection()
    odd_detail = {"session_id": ObjectId(), "when": now}  # values JSON cannot hold
    await raw.insert_many(
        [
            {"user_id": alice.user.id, "type": "from.a.newer.version", "at": now},
            {"user_id": alice.user.id, "type": "login.failed", "at": "yesterday"},
            {"user_id": alice.user.id, "type": "login.failed", "at": Regex("x")},
            {"user_id": alice.user.id, "type": "login.failed", "at": [now, now]},
            {"user_id": alice.user.id, "type": "login.failed", "at": {"$date": 1}},
            {"_id": "odd", "user_id": alice.user.id, "type": "login.failed", "at": now},
            {"user_id": alice.user.id, "type": "login.failed", "at": now, "detail": "text"},
            {"user_id": alice.user.id, "type": "login.failed", "at": now, "detail": odd_detail},
            {"user_id": alice.user.id},
        ]
    )
    response = await client.get(EVENTS, headers=alice.headers, params={"limit": 10})
    assert response.status_code == 200
    shown = [e["type"] for e in response.json()["items"]]
    assert sorted(shown) == ["from.a.newer.version", "login.failed"]
    metrics = (await client.get("/metrics")).text
    assert 'docstore_unrenderable_documents_total{where="security_events"} 2.0' in metrics
    paged = await walk_pages(client, EVENTS, alice.headers, limit=1)  # a cursor past each
    assert sorted(e["type"] for e in paged) == sorted(shown)


async def test_entries_are_capped_expire_and_go_with_the_account(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    long_agent = "A" * 5000
    await client.post(
        f"{AUTH}/login",
        data={"username": "alice", "password": "wrong"},
        headers={"User-Agent": long_agent},
    )
    (stored,) = await stored_events(alice.id)
    assert stored["user_agent"] == "A" * 300
    days = services_of(app).settings.audit_retention_days
    assert stored["expires_at"] - stored["at"] == timedelta(days=days)
    indexes = await SecurityEvent.get_pymongo_collection().index_information()
    ttl = [i for i in indexes.values() if i["key"] == [("expires_at", 1)]]
    assert len(ttl) == 1
    assert ttl[0]["expireAfterSeconds"] == 0
    deleted = await client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers)
    assert deleted.status_code == 204
    assert await stored_events(alice.id) == []

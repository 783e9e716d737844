"""POST /auth/login and GET /auth/me."""

import asyncio
import base64
import json
import statistics
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx2
from fastapi import FastAPI

from api.accounts.tokens import TokenSigner
from documents import LoginAttempts, User
from tests.conftest import (
    LOGIN,
    PASSWORD,
    TEST_SECRET,
    Account,
    app_with,
    login,
    make_account,
    make_settings,
    signer_of,
)

ME = "/api/v1/auth/me"


async def test_login_by_username_or_email_case_insensitively(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    for name in ("alice", "ALICE", "alice@example.com", "Alice@Example.COM"):
        response = await login(client, name)
        assert response.status_code == 200, name
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 30 * 60
        assert body["user"]["id"] == alice.id
        assert "hashed_password" not in body["user"]
        me = await client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200
        assert me.json()["username"] == "alice"


async def test_access_token_claims_and_header(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    token = (await login(client, "alice")).json()["access_token"]
    header_part, payload_part, _ = token.split(".")
    header, claims = _segment(header_part), _segment(payload_part)
    assert header["alg"] == "HS256"
    assert header["kid"] == signer_of(app).kid
    assert {"sub", "exp", "iat", "jti", "iss", "aud"} <= claims.keys()
    assert claims["sub"] == alice.id
    assert claims["exp"] - claims["iat"] == 30 * 60


def _segment(part: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def test_wrong_password_and_unknown_user_get_the_same_401(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    wrong = await login(client, "alice", "Wrong-password-1")
    unknown = await login(client, "nobody", "Wrong-password-1")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.json()["type"] == unknown.json()["type"]


async def test_inactive_user_cannot_log_in(client: httpx2.AsyncClient, alice: Account) -> None:
    await alice.user.set({"is_active": False})
    response = await login(client, "alice")
    assert response.status_code == 400
    assert response.json()["detail"] == "This account is deactivated."


async def test_inactive_user_with_wrong_password_learns_nothing(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    await alice.user.set({"is_active": False})
    assert (await login(client, "alice", "Wrong-password-1")).status_code == 401


async def test_login_form_fields_are_required(client: httpx2.AsyncClient) -> None:
    response = await client.post(LOGIN, data={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "password"]
    assert (await client.post(LOGIN, json={"username": "a", "password": "b"})).status_code == 422


async def test_overlong_password_is_refused_not_truncated(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    # bcrypt looks at 72 bytes only; the 73rd must still matter.
    assert (await login(client, "alice", PASSWORD + "x" * 80)).status_code == 401


async def test_me_requires_a_token(client: httpx2.AsyncClient) -> None:
    response = await client.get(ME)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


async def test_bad_tokens_are_401(app: FastAPI, client: httpx2.AsyncClient, alice: Account) -> None:
    signer = signer_of(app)
    expired = TokenSigner(TEST_SECRET, signer.issuer, signer.audience, -60).issue(
        alice.id, 0, alice.session_id
    )
    other_key = TokenSigner("another-secret-" + "y" * 40, signer.issuer, signer.audience, 60)
    wrong_audience = TokenSigner(TEST_SECRET, signer.issuer, "someone-else", 60)
    not_an_id = signer.issue("not-an-object-id", 0, alice.session_id)
    unknown_user = signer.issue("0123456789abcdef01234567", 0, alice.session_id)
    tampered = alice.token[:-4] + ("AAAA" if not alice.token.endswith("AAAA") else "BBBB")
    none_alg = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + alice.token.split(".")[1] + "."
    for token in (
        "garbage",
        expired,
        other_key.issue(alice.id, 0, alice.session_id),
        wrong_audience.issue(alice.id, 0, alice.session_id),
        not_an_id,
        unknown_user,
        tampered,
        none_alg,
    ):
        response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"


async def test_deactivated_users_token_stops_working(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    assert (await client.get(ME, headers=alice.headers)).status_code == 200
    response = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200
    assert (await client.get(ME, headers=alice.headers)).status_code == 401


async def test_account_without_a_password_cannot_log_in(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    # What `seed` stores for a user imported without password or hash.
    await alice.user.set({"hashed_password": "!no-password:abc"})
    for password in (PASSWORD, "!no-password:abc", ""):
        assert (await login(client, "alice", password)).status_code in (401, 422)


async def test_unknown_user_and_wrong_password_take_the_same_time(
    mongodb_url: str, tmp_path: Path
) -> None:
    """Timing must not reveal which accounts exist: median of 30 each, interleaved."""
    settings = make_settings(
        mongodb_url,
        tmp_path,
        login_max_failures_per_account_client=1000,
        login_max_failures_per_account=1000,
        login_max_failures_per_client=1000,
    )
    async with app_with(settings) as (app, _):
        await make_account(app, "alice")
        timings: tuple[list[float], list[float]] = ([], [])
        for _ in range(30):  # in turns, so drift in the machine hits both alike
            for name, samples in zip(("nobody", "alice"), timings, strict=True):
                status, seconds = await time_to_answer(app, name, "Wrong-password-1")
                assert status == 401
                samples.append(seconds)
        unknown, wrong = timings
        ratio = statistics.median(unknown) / statistics.median(wrong)
        assert 0.8 <= ratio <= 1.25, ratio


async def time_to_answer(app: FastAPI, username: str, password: str) -> tuple[int, float]:
    """A sign-in's status and the seconds until its answer began, as a client sees them:
    what the app does once the answer is sent (logging a known account's failure) is
    not part of it. (httpx's ASGI transport returns only once the app has finished.)"""
    body = urlencode({"username": username, "password": password}).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": LOGIN, "raw_path": LOGIN.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ],
    }  # fmt: skip
    answered: list[tuple[int, float]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            answered.append((int(str(message["status"])), time.perf_counter()))

    started = time.perf_counter()
    await app(scope, receive, send)
    status, at = answered[0]
    return status, at - started


async def test_an_unknown_user_costs_one_bcrypt_check_like_a_wrong_password(
    client: httpx2.AsyncClient, alice: Account, password_checks: list[str]
) -> None:
    """What the timing test cannot see at cost 4: the dummy hash really is checked."""
    for name in ("nobody", "alice"):
        response = await login(client, name, f"Wrong-{name}-1")
        assert response.status_code == 401
    assert password_checks == ["Wrong-nobody-1", "Wrong-alice-1"]


async def test_a_sign_in_upgrades_a_hash_made_at_another_cost(
    mongodb_url: str, tmp_path: Path
) -> None:
    async with app_with(make_settings(mongodb_url, tmp_path, bcrypt_rounds=5)) as (app, client):
        alice = await make_account(app, "alice")  # hashed at cost 4
        assert (await login(client, "alice", "Wrong-password-1")).status_code == 401
        assert (await User.get(alice.user.id)).hashed_password.startswith("$2b$04$")  # type: ignore[union-attr]
        assert (await login(client, "alice", PASSWORD)).status_code == 200
        assert (await User.get(alice.user.id)).hashed_password.startswith("$2b$05$")  # type: ignore[union-attr]
        assert (await login(client, "alice", PASSWORD)).status_code == 200


async def test_a_storm_of_sign_ins_is_a_503_not_an_endless_queue(
    mongodb_url: str, tmp_path: Path
) -> None:
    """Hashes at cost 8 (about 15 ms each) on a pool of one per core, none allowed to
    wait: a sign-in that finds the pool busy is refused at once with Retry-After. (Kept
    small: a heavier storm would skew the timing tests running beside it.)"""
    settings = make_settings(mongodb_url, tmp_path, bcrypt_rounds=8, bcrypt_max_waiting=0)
    async with app_with(settings) as (_, client):
        storm = await asyncio.gather(
            *(login(client, f"nobody{n}", "Wrong-password-1") for n in range(24))
        )
        statuses = [response.status_code for response in storm]
        assert set(statuses) == {401, 503}
        # A sign-in the busy server turned away cost its account no attempt; it was
        # refused before any database work, so it did not even open a counter.
        counters = await LoginAttempts.find({"_id": {"$regex": "^login-name:[0-9a-f]+$"}}).to_list()
        assert sum(counter.failures for counter in counters) == statuses.count(401)
        assert len(counters) == statuses.count(401)
    busy = next(response for response in storm if response.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"] == "application/problem+json"


async def test_a_login_name_no_account_can_have_is_refused_uncounted(
    client: httpx2.AsyncClient,
) -> None:
    assert (await login(client, "x" * 5000, "Wrong-password-1")).status_code == 401
    assert await LoginAttempts.count() == 0

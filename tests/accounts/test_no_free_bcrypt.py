"""Nobody gets a bcrypt hash for free: a reset hashes only for a live token and counts
its failures per client; checks of the current password are counted right or wrong."""

import asyncio
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from api.accounts import action_tokens
from documents import Purpose
from tests.conftest import (
    PASSWORD,
    Account,
    app_with,
    client_from,
    login,
    make_account,
    make_settings,
)

RESET = "/api/v1/auth/reset-password"


async def test_bogus_resets_hash_nothing_and_are_throttled_per_client(
    app: FastAPI, alice: Account, password_hashes: list[str]
) -> None:
    bogus = {"token": "not-a-token", "new_password": "Brand-new-pass-1"}
    async with client_from(app, "203.0.113.5") as attacker:
        burst = [attacker.post(RESET, json=bogus) for _ in range(40)]
        statuses = sorted(response.status_code for response in await asyncio.gather(*burst))
        assert statuses == [400] * 10 + [429] * 30
        throttled = await attacker.post(RESET, json=bogus)
        assert throttled.status_code == 429
        assert throttled.json()["detail"] == (
            "Too many failed password resets; wait before trying again."
        )
        assert 1 <= int(throttled.headers["Retry-After"]) <= 900
    assert password_hashes == []  # not one hash for a token nobody holds
    # The owner, even behind the same address (one NAT), is not held up by its failures.
    token = await action_tokens.issue(alice.user, Purpose.reset_password, timedelta(hours=1), None)
    async with client_from(app, "203.0.113.5") as owner:
        reset = {"token": token, "new_password": "Brand-new-pass-1"}
        assert (await owner.post(RESET, json=reset)).status_code == 204
        assert (await login(owner, "alice", "Brand-new-pass-1")).status_code == 200
    assert password_hashes == ["Brand-new-pass-1"]  # one hash, for the live token


async def test_a_reset_with_a_live_token_does_not_count_against_its_client(
    app: FastAPI, alice: Account
) -> None:
    async with client_from(app, "203.0.113.6") as owner:
        for n in range(12):  # more than the 10 failures a client may have
            token = await action_tokens.issue(
                alice.user, Purpose.reset_password, timedelta(hours=1), None
            )
            reset = {"token": token, "new_password": f"Brand-new-pass-{n}"}
            assert (await owner.post(RESET, json=reset)).status_code == 204


async def test_right_current_passwords_are_counted_too(
    mongodb_url: str, tmp_path: Path, password_checks: list[str]
) -> None:
    """Each check costs a hash: 5 per window, right or wrong. A right one does not count
    against the account's logins: the owner still signs in, even where the account may
    fail no more than those 5 (had they counted, that sign-in would be a 429)."""
    settings = make_settings(mongodb_url, tmp_path, login_max_failures_per_account=5)
    async with app_with(settings) as (app, client):
        password_checks.clear()  # the start-up's warm-up of the dummy hash
        alice = await make_account(app, "alice")
        url = f"/api/v1/users/{alice.id}"
        statuses = []
        for n in range(8):
            change = {"email": f"alice{n}@example.com", "current_password": PASSWORD}
            response = await client.patch(url, json=change, headers=alice.headers)
            statuses.append(response.status_code)
        assert statuses == [200] * 5 + [429] * 3
        assert password_checks == [PASSWORD] * 5
        assert (await login(client, "alice", PASSWORD)).status_code == 200

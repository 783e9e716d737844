"""Access tokens against the RFC 8725 list of attacks, and key rotation by kid."""

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from api.accounts.tokens import TokenSigner
from api.main import create_app
from tests.conftest import TEST_SECRET, Account, make_account, make_settings, signer_of

ME = "/api/v1/auth/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: dict[str, Any], claims: dict[str, Any], secret: str, digest: Any = hashlib.sha256
) -> str:
    """A token built by hand, as an attacker would: any header, any claims."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def good_parts(app: FastAPI, account: Account) -> tuple[dict[str, Any], dict[str, Any]]:
    signer = signer_of(app)
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    claims = {
        "sub": account.id,
        "iss": signer.issuer,
        "aud": signer.audience,
        "iat": now,
        "exp": now + 60,
        "jti": "j1",
        "ver": 0,
        "sid": account.session_id,
    }
    return header, claims


async def test_a_hand_made_valid_token_works(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    # The baseline the attacks below vary: so each 401 is due to its one change.
    header, claims = good_parts(app, alice)
    token = forge(header, claims, TEST_SECRET)
    assert (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code == 200


def _without(values: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != key}


ATTACKS = {
    "alg none": lambda h, c: forge({**h, "alg": "none"}, c, TEST_SECRET).rsplit(".", 1)[0] + ".",
    "alg RS256 signed with the secret (confusion)": lambda h, c: forge(
        {**h, "alg": "RS256"}, c, TEST_SECRET
    ),
    "alg HS512": lambda h, c: forge({**h, "alg": "HS512"}, c, TEST_SECRET, hashlib.sha512),
    "wrong audience": lambda h, c: forge(h, {**c, "aud": "another-api"}, TEST_SECRET),
    "wrong issuer": lambda h, c: forge(h, {**c, "iss": "someone"}, TEST_SECRET),
    "expired": lambda h, c: forge(h, {**c, "exp": int(time.time()) - 60}, TEST_SECRET),
    "missing exp": lambda h, c: forge(h, _without(c, "exp"), TEST_SECRET),
    "missing sub": lambda h, c: forge(h, _without(c, "sub"), TEST_SECRET),
    "missing session": lambda h, c: forge(h, _without(c, "sid"), TEST_SECRET),
    "someone else's session": lambda h, c: forge(h, {**c, "sid": "0" * 24}, TEST_SECRET),
    "tampered payload": lambda h, c: _swap_payload(
        forge(h, c, TEST_SECRET), {**c, "sub": "0" * 24}
    ),
    "tampered signature": lambda h, c: forge(h, c, TEST_SECRET)[:-6] + "AAAAAA",
    "unknown kid": lambda h, c: forge({**h, "kid": "not-a-key"}, c, TEST_SECRET),
    "missing kid": lambda h, c: forge(_without(h, "kid"), c, TEST_SECRET),
    "someone else's secret": lambda h, c: forge(h, c, "attacker-" + "z" * 40),
    "sub not an id": lambda h, c: forge(h, {**c, "sub": "nobody"}, TEST_SECRET),
}


def _swap_payload(token: str, claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attacks_are_401(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, attack: str
) -> None:
    token = ATTACKS[attack](*good_parts(app, alice))
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


async def test_rotation_keeps_sessions_and_retiring_ends_them(
    mongodb_url: str, tmp_path: Path
) -> None:
    old, new = "old-secret-" + "o" * 40, "new-secret-" + "n" * 40
    db = make_settings(mongodb_url, tmp_path).mongodb_db

    async def me_with(token: str, **settings: Any) -> int:
        app = create_app(make_settings(mongodb_url, tmp_path, mongodb_db=db, **settings))
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
                return response.status_code

    app = create_app(make_settings(mongodb_url, tmp_path, mongodb_db=db, secret_key=old))
    async with app.router.lifespan_context(app):
        alice = await make_account(app, "alice")
    signed_by_old = alice.token
    try:
        await _check_rotation(me_with, signed_by_old, alice, old, new)
    finally:
        async with AsyncMongoClient(mongodb_url) as client:
            await client.drop_database(db)


async def _check_rotation(
    me_with: Any, signed_by_old: str, alice: Account, old: str, new: str
) -> None:
    assert await me_with(signed_by_old, secret_key=old) == 200
    # Rotated: the new key signs, the old one is still accepted.
    assert await me_with(signed_by_old, secret_key=new, previous_secret_keys=old) == 200
    signer = TokenSigner(new, "docstore", "docstore-api", 60)
    assert (
        await me_with(
            signer.issue(alice.id, 0, alice.session_id), secret_key=new, previous_secret_keys=old
        )
        == 200
    )
    # Retired: tokens the old key signed stop working.
    assert await me_with(signed_by_old, secret_key=new) == 401

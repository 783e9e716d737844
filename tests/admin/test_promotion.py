"""Nobody gets a superuser account by registering its address first.

With open sign-up anyone may hold `root@example.com` before the admin runs
`create-superuser` or a seed that names it: promoting that account unasked would hand
its holder superuser rights under their own password (the admin's never works)."""

from pathlib import Path
from typing import Any

import httpx2

from tests.admin.conftest import Admin, write_ndjson
from tests.conftest import login

SQUATTER = {"email": "root@example.com", "username": "squatter", "password": "Squatter-pass-1"}
ADMIN_PASSWORD = "Admin-pass-1"


async def _squat(client: httpx2.AsyncClient, app_admin: Admin) -> dict[str, Any]:
    """Someone signs up for the address first, through the API (sign-up is open)."""
    response = await client.post("/api/v1/users", json=SQUATTER)
    assert response.status_code == 201, response.text
    squatter = await app_admin.db.users.find_one({"username": "squatter"})
    assert squatter is not None
    return squatter


async def _superuser_by_login(client: httpx2.AsyncClient, password: str) -> bool | None:
    """Whether `root@example.com` logs in with this password as a superuser (None: no login)."""
    response = await login(client, "root@example.com", password)
    if response.status_code != 200:
        return None
    superuser: bool = response.json()["user"]["is_superuser"]
    return superuser


async def test_create_superuser_refuses_an_address_someone_registered(
    client: httpx2.AsyncClient, app_admin: Admin
) -> None:
    squatter = await _squat(client, app_admin)
    run = await app_admin(
        "create-superuser", "--email", "ROOT@example.com", "--username", "root",
        "--password", ADMIN_PASSWORD,
    )  # fmt: skip
    assert run.code == 1
    assert run.out == ""
    [message] = run.err.splitlines()  # one line, saying whose account and what to do
    assert "squatter <root@example.com>" in message
    assert "NOT verified" in message
    assert "nothing changed" in message
    assert "--promote" in message
    assert await app_admin.db.users.find_one({"_id": squatter["_id"]}) == squatter
    assert await _superuser_by_login(client, SQUATTER["password"]) is False


async def test_create_superuser_promote_names_whose_account_it_is(
    client: httpx2.AsyncClient, app_admin: Admin
) -> None:
    squatter = await _squat(client, app_admin)
    # No username or password asked for: an existing account keeps its own.
    run = await app_admin("create-superuser", "--email", "root@example.com", "--promote")
    assert run.code == 0, run.err
    assert "Promoted the existing account squatter <root@example.com>" in run.out
    assert "email NOT verified" in run.out
    assert "password is unchanged" in run.out
    # Exactly what the output said: the holder's password is a superuser's now.
    assert await _superuser_by_login(client, SQUATTER["password"]) is True
    promoted = await app_admin.db.users.find_one({"_id": squatter["_id"]})
    assert promoted is not None
    assert promoted["hashed_password"] == squatter["hashed_password"]
    assert promoted["updated_at"] > squatter["updated_at"]


async def test_create_superuser_refuses_a_taken_username(admin_cli: Admin, tmp_path: Path) -> None:
    other = {"kind": "user", **SQUATTER, "email": "someone@example.com", "username": "root"}
    assert (await admin_cli("seed", write_ndjson(tmp_path / "o.ndjson", [other]))).code == 0
    run = await admin_cli(
        "create-superuser", "--email", "root@example.com", "--username", "ROOT",
        "--password", "Admin-pass-1",
    )  # fmt: skip
    assert run.code == 1
    assert run.err.strip() == "Refused: the username 'ROOT' is taken; nothing changed."
    assert await admin_cli.db.users.count_documents({}) == 1

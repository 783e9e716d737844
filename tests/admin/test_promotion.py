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


ROOT_RECORD = {
    "kind": "user",
    "email": "root@example.com",
    "username": "root",
    "password": ADMIN_PASSWORD,
    "is_superuser": True,
}
NEWCOMER = {"kind": "user", "email": "new@example.com", "username": "newcomer"}


async def test_seed_refuses_to_promote_an_existing_account_unasked(
    client: httpx2.AsyncClient, app_admin: Admin, tmp_path: Path
) -> None:
    squatter = await _squat(client, app_admin)
    source = write_ndjson(tmp_path / "root.ndjson", [ROOT_RECORD, NEWCOMER])
    strict = await app_admin("seed", "--strict", source)
    assert strict.code == 1
    assert await app_admin.db.users.count_documents({}) == 1  # --strict: nothing at all

    run = await app_admin("seed", source)
    assert run.code == 1
    [error] = run.err.splitlines()
    assert error.startswith(f"{source}:1: root@example.com belongs to the existing account ")
    assert "squatter <root@example.com>" in error
    assert "--promote" in error
    # The refused line changed nothing; the other was written, and the count says so.
    assert "2 valid records; wrote 1 users and 0 items; 1 errors." in run.out
    assert await app_admin.db.users.find_one({"_id": squatter["_id"]}) == squatter
    assert await app_admin.db.users.count_documents({"username": "newcomer"}) == 1
    assert await _superuser_by_login(client, SQUATTER["password"]) is False
    assert await _superuser_by_login(client, ADMIN_PASSWORD) is None


async def test_seed_promote_makes_the_existing_account_a_superuser_by_name(
    client: httpx2.AsyncClient, app_admin: Admin, tmp_path: Path
) -> None:
    squatter = await _squat(client, app_admin)
    source = write_ndjson(tmp_path / "root.ndjson", [ROOT_RECORD])
    run = await app_admin("seed", "--promote", source)
    assert run.code == 0, run.err
    assert (
        f"{source}:1: promoted the existing account squatter <root@example.com> "
        f"({squatter['_id']}, email NOT verified) to superuser"
    ) in run.out
    promoted = await app_admin.db.users.find_one({"_id": squatter["_id"]})
    assert promoted is not None
    assert promoted["is_superuser"] is True
    # Promoted as it is: its password and the name its owner chose stay theirs.
    assert promoted["hashed_password"] == squatter["hashed_password"]
    assert promoted["username"] == "squatter"
    assert await _superuser_by_login(client, SQUATTER["password"]) is True

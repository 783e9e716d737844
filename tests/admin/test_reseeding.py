"""Re-running a seed never rolls back what changed since: a field a record leaves out is
never reset, a value or item changed since seed wrote it is kept (and the line says so),
and only `--overwrite` writes over such changes."""

from pathlib import Path
from typing import Any

import httpx2

from tests.admin.conftest import EXAMPLE, Admin, write_ndjson
from tests.conftest import login


async def _bearer(client: httpx2.AsyncClient, username: str, password: str) -> dict[str, str]:
    response = await login(client, username, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _patch_item(
    client: httpx2.AsyncClient, headers: dict[str, str], item_id: Any, patch: dict[str, Any]
) -> dict[str, Any]:
    response = await client.patch(f"/api/v1/items/{item_id}", json=patch, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_reseeding_the_example_keeps_what_changed_since(
    client: httpx2.AsyncClient, app_admin: Admin
) -> None:
    """The issue's reproduction: deactivate ada, promote grace, grace edits her item, seed
    the same file again."""
    assert (await app_admin("seed", EXAMPLE)).code == 0
    users = app_admin.db.users
    await users.update_one({"username": "ada"}, {"$set": {"is_active": False}})
    await users.update_one({"username": "grace"}, {"$set": {"is_superuser": True}})
    grace = await _bearer(client, "grace", "Cobol-Compiler-1959")
    moth = await app_admin.db.items.find_one({"title": "Moth in relay 70"})
    assert moth is not None
    edited = await _patch_item(client, grace, moth["_id"], {"data": {"panel": "G"}})
    assert edited["version"] == 2

    again = await app_admin("seed", EXAMPLE)
    assert again.code == 0, again.err
    assert "6 valid records; wrote 0 users and 0 items; kept 1 as stored" in again.out
    assert (
        f"{EXAMPLE}:6: kept item 'Moth in relay 70' of grace as stored: its version 2 "
        "is not one seed wrote (--overwrite replaces it)"
    ) in again.out
    ada = await users.find_one({"username": "ada"})
    grace_now = await users.find_one({"username": "grace"})
    assert ada is not None
    assert grace_now is not None
    assert ada["is_active"] is False
    assert grace_now["is_superuser"] is True
    response = await client.get(f"/api/v1/items/{moth['_id']}", headers=grace)
    assert response.status_code == 200
    assert response.json() == edited  # version 2, grace's data; no seed bookkeeping shown


ADA = {
    "kind": "user",
    "email": "ada@example.com",
    "username": "ada",
    "full_name": "Ada Lovelace",
    "is_active": True,
    "password": "Analytical-Engine-1843",
}
GRACE = {
    "kind": "user",
    "email": "grace@example.com",
    "username": "grace",
    "full_name": "Grace Hopper",
    "password": "Cobol-Compiler-1959",
}


async def test_a_given_user_field_is_written_only_where_seed_left_it(
    client: httpx2.AsyncClient, app_admin: Admin, tmp_path: Path
) -> None:
    first = write_ndjson(tmp_path / "a.ndjson", [ADA, GRACE])
    assert (await app_admin("seed", first)).code == 0
    ada = await _bearer(client, "ada", ADA["password"])
    ada_id = (await client.get("/api/v1/auth/me", headers=ada)).json()["id"]
    renamed = await client.patch(
        f"/api/v1/users/{ada_id}", json={"full_name": "Ada King"}, headers=ada
    )
    assert renamed.status_code == 200, renamed.text
    await app_admin.db.users.update_one({"username": "grace"}, {"$set": {"is_active": False}})

    # The file is edited: both full names change, and grace is said to be active.
    edited = [
        {**ADA, "full_name": "Augusta Ada"},
        {**GRACE, "full_name": "Grace B. Hopper", "is_active": True},
    ]
    second = write_ndjson(tmp_path / "b.ndjson", edited)
    run = await app_admin("seed", second)
    assert run.code == 0, run.err
    assert "wrote 1 users and 0 items; kept 2 as stored" in run.out
    assert f"{second}:1: kept full_name of ada@example.com as stored" in run.out
    assert f"{second}:2: kept is_active of grace@example.com as stored" in run.out
    assert await _profile(app_admin) == {
        "ada": ("Ada King", True),  # her own change stays
        "grace": ("Grace B. Hopper", False),  # seed's value moves on; the deactivation stays
    }

    overwritten = await app_admin("seed", "--overwrite", second)
    assert overwritten.code == 0, overwritten.err
    assert "wrote 2 users and 0 items; 0 errors." in overwritten.out
    assert await _profile(app_admin) == {
        "ada": ("Augusta Ada", True),
        "grace": ("Grace B. Hopper", True),
    }


async def _profile(admin: Admin) -> dict[str, tuple[str, bool]]:
    found = admin.db.users.find({}, {"username": 1, "full_name": 1, "is_active": 1})
    return {doc["username"]: (doc["full_name"], doc["is_active"]) async for doc in found}


OWNER = {"kind": "user", "email": "o@example.com", "username": "owner", "password": "Good-pass-1"}
NOTE = {
    "kind": "item",
    "owner": "owner",
    "title": "note",
    "description": "as seeded",
    "tags": ["a"],
    "data": {"n": 1},
}


async def test_a_field_an_item_record_leaves_out_is_never_reset(
    app_admin: Admin, tmp_path: Path
) -> None:
    assert (await app_admin("seed", write_ndjson(tmp_path / "a.ndjson", [OWNER, NOTE]))).code == 0
    shorter = {"kind": "item", "owner": "owner", "title": "note", "data": {"n": 2}}
    run = await app_admin("seed", write_ndjson(tmp_path / "b.ndjson", [OWNER, shorter]))
    assert run.code == 0, run.err
    assert "wrote 0 users and 1 items" in run.out
    note = await app_admin.db.items.find_one({"title": "note"})
    assert note is not None
    assert (note["description"], note["tags"], note["data"]) == ("as seeded", ["a"], {"n": 2})
    assert note["version"] == 2
    assert "seeded" in note["search_terms"]  # still found by the text it kept


async def test_an_item_record_with_a_version_is_applied_unless_older(
    client: httpx2.AsyncClient, app_admin: Admin, tmp_path: Path
) -> None:
    """An export carries versions: one at least as new as the stored item is applied over
    changes made since (and sets that version); an older one never rolls back."""
    assert (await app_admin("seed", write_ndjson(tmp_path / "a.ndjson", [OWNER, NOTE]))).code == 0
    owner = await _bearer(client, "owner", OWNER["password"])
    note = await app_admin.db.items.find_one({"title": "note"})
    assert note is not None
    for n in (2, 3):  # versions 2 and 3, through the API
        await _patch_item(client, owner, note["_id"], {"data": {"n": n}})

    older = write_ndjson(tmp_path / "old.ndjson", [{**NOTE, "data": {"n": 9}, "version": 2}])
    run = await app_admin("seed", older)
    assert run.code == 0, run.err
    assert "and the record's version 2 is older" in run.out
    assert await _content(app_admin) == ({"n": 3}, 3)

    newer = write_ndjson(tmp_path / "new.ndjson", [{**NOTE, "data": {"n": 9}, "version": 5}])
    assert "wrote 0 users and 1 items" in (await app_admin("seed", newer)).out
    assert await _content(app_admin) == ({"n": 9}, 5)
    # Seed wrote version 5: the same file may now change it again, as any seed-made item.
    again = write_ndjson(tmp_path / "again.ndjson", [{**NOTE, "data": {"n": 10}}])
    assert "wrote 0 users and 1 items" in (await app_admin("seed", again)).out
    assert await _content(app_admin) == ({"n": 10}, 6)


async def test_overwrite_replaces_a_changed_item_wholesale_with_a_new_version(
    client: httpx2.AsyncClient, app_admin: Admin, tmp_path: Path
) -> None:
    assert (await app_admin("seed", write_ndjson(tmp_path / "a.ndjson", [OWNER, NOTE]))).code == 0
    owner = await _bearer(client, "owner", OWNER["password"])
    note = await app_admin.db.items.find_one({"title": "note"})
    assert note is not None
    await _patch_item(client, owner, note["_id"], {"data": {"n": 2}})
    bare = {"kind": "item", "owner": "owner", "title": "note", "data": {"n": 1}}
    source = write_ndjson(tmp_path / "b.ndjson", [bare])

    kept = await app_admin("seed", source)
    assert "wrote 0 users and 0 items; kept 1 as stored" in kept.out
    assert await _content(app_admin) == ({"n": 2}, 2)

    run = await app_admin("seed", "--overwrite", source)
    assert run.code == 0, run.err
    assert "wrote 0 users and 1 items; 0 errors." in run.out
    replaced = await app_admin.db.items.find_one({"_id": note["_id"]})
    assert replaced is not None
    # Wholesale: what the record leaves out is the default again; a new version.
    assert (replaced["description"], replaced["tags"], replaced["data"]) == (None, [], {"n": 1})
    assert replaced["version"] == 3


async def _content(admin: Admin) -> tuple[Any, int]:
    note = await admin.db.items.find_one({"title": "note"})
    assert note is not None
    return note["data"], note["version"]


async def test_a_seeded_field_another_tool_wrote_oddly_counts_as_nothing_recorded(
    app_admin: Admin, tmp_path: Path
) -> None:
    """A `seeded` that is no record of seed's (a list, a number) is as if seed had
    written nothing: the re-seed goes through, keeping what it cannot tell it wrote."""
    assert (await app_admin("seed", write_ndjson(tmp_path / "a.ndjson", [OWNER, NOTE]))).code == 0
    await app_admin.db.users.update_one({"username": "owner"}, {"$set": {"seeded": ["full_name"]}})
    await app_admin.db.items.update_one({"title": "note"}, {"$set": {"seeded": 7}})
    edited = [{**OWNER, "full_name": "Someone"}, {**NOTE, "data": {"n": 2}}]
    run = await app_admin("seed", write_ndjson(tmp_path / "b.ndjson", edited))
    assert run.code == 0, run.err
    assert "wrote 0 users and 0 items; kept 2 as stored" in run.out
    assert await _content(app_admin) == ({"n": 1}, 1)

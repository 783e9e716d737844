"""The admin commands, run as a user runs them: as a separate process on the database."""

import json
import os
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.admin.conftest import EXAMPLE, Admin, snapshot, write_ndjson


async def test_seed_example_is_idempotent(admin_cli: Admin) -> None:
    first = await admin_cli("seed", EXAMPLE)
    assert first.code == 0, first.err
    assert "6 valid records; wrote 2 users and 4 items; 0 errors." in first.out
    before = await snapshot(admin_cli.db)
    second = await admin_cli("seed", EXAMPLE)
    assert second.code == 0
    assert "wrote 0 users and 0 items" in second.out
    assert await snapshot(admin_cli.db) == before
    ada = await admin_cli.db.users.find_one({"username": "ada"})
    assert ada is not None
    assert ada["hashed_password"].startswith("$2b$04$")
    assert await admin_cli.db.items.count_documents({"owner_id": ada["_id"]}) == 2


BAD_LINES = [
    {"kind": "user", "email": "ok@example.com", "username": "okay", "password": "Good-pass-1"},
    {"kind": "user", "email": "broken", "username": "b", "password": "x"},
    "{not json",
    {"kind": "item", "owner": "okay", "title": "fine", "data": {"a": 1}},
    {"kind": "item", "owner": "ghost", "title": "orphan"},
    {"kind": "item", "owner": "okay", "title": "bad data", "data": {"$set": 1}},
    {"kind": "gadget"},
    {"kind": "user", "email": "dupe@example.com", "username": "OKAY", "password": "Good-pass-1"},
]


async def test_seed_reports_each_bad_line_and_keeps_going(admin_cli: Admin, tmp_path: Path) -> None:
    source = write_ndjson(tmp_path / "mixed.ndjson", BAD_LINES)
    run = await admin_cli("seed", source)
    assert run.code == 1
    errors = [line for line in run.err.splitlines() if line.startswith(str(source))]
    assert [line.split(":")[1] for line in errors] == ["2", "3", "5", "6", "7", "8"]
    assert "invalid JSON" in errors[1]
    assert "unknown owner 'ghost'" in errors[2]
    assert "'$set'" in errors[3]
    assert "duplicate" in errors[5]
    assert await admin_cli.db.users.count_documents({}) == 1
    assert await admin_cli.db.items.count_documents({}) == 1


async def test_strict_seed_writes_nothing_when_any_line_is_bad(
    admin_cli: Admin, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "mixed.ndjson", BAD_LINES[:3])
    run = await admin_cli("seed", "--strict", source)
    assert run.code == 1
    assert await admin_cli.db.users.count_documents({}) == 0


async def test_dry_run_validates_without_writing(admin_cli: Admin, tmp_path: Path) -> None:
    run = await admin_cli("seed", "--dry-run", EXAMPLE)
    assert run.code == 0, run.err
    assert "6 valid records; would write 2 users and 4 items; 0 errors." in run.out
    assert await admin_cli.db.users.count_documents({}) == 0
    bad = await admin_cli("seed", "--dry-run", write_ndjson(tmp_path / "b.ndjson", BAD_LINES))
    assert bad.code == 1
    assert f"{tmp_path / 'b.ndjson'}:5: unknown owner 'ghost'" in bad.err


async def test_seed_json_array_reports_line_numbers(admin_cli: Admin, tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_text(
        "[\n"
        '  {"kind": "user", "email": "j@example.com", "username": "jay",\n'
        '   "password": "Jay-pass-1"},\n'
        '  {"kind": "item", "owner": "jay",\n   "title": ""},\n'
        '  {"kind": "item", "owner": "jay", "title": "ok", "tags": ["A"]}\n'
        "]\n"
    )
    run = await admin_cli("seed", source, "--batch-size", "1")
    assert run.code == 1
    assert f"{source}:4: title:" in run.err
    item = await admin_cli.db.items.find_one({"title": "ok"})
    assert item is not None
    assert item["tags"] == ["a"]


async def test_create_superuser_and_promote(admin_cli: Admin) -> None:
    created = await admin_cli(
        "create-superuser",
        "--email",
        "root@example.com",
        "--username",
        "root",
        "--password",
        "Root-pass-1",
    )
    assert created.code == 0, created.err
    assert "Created superuser root@example.com" in created.out
    root = await admin_cli.db.users.find_one({"username": "root"})
    assert root is not None
    assert root["is_superuser"] is True
    again = await admin_cli(
        "create-superuser", "--email", "root@example.com", "--username", "root",
        "--password", "Root-pass-1",
    )  # fmt: skip
    assert again.code == 0, again.err  # a superuser already: nothing to refuse or do
    assert "root <root@example.com>" in again.out
    assert "is already a superuser; nothing changed; the password given was not set" in again.out

    await admin_cli("seed", EXAMPLE)
    promoted = await admin_cli(
        "create-superuser",
        "--email",
        "ADA@example.com",
        "--username",
        "ada",
        "--password",
        "Whatever-1",
        "--promote",  # without it an existing account is refused (test_promotion.py)
    )
    assert promoted.code == 0, promoted.err
    assert "Promoted the existing account ada <ada@example.com>" in promoted.out
    assert "email NOT verified" in promoted.out
    assert "the password given was not set" in promoted.out
    ada = await admin_cli.db.users.find_one({"username": "ada"})
    assert ada is not None
    assert ada["is_superuser"] is True


async def test_create_superuser_prompts_for_what_is_missing(admin_cli: Admin) -> None:
    run = await admin_cli(
        "create-superuser",
        "--email",
        "p@example.com",
        "--username",
        "prompted",
        stdin="Prompt-pass-1\nPrompt-pass-1\n",
    )
    assert run.code == 0, run.err
    assert await admin_cli.db.users.count_documents({"username": "prompted"}) == 1


async def test_create_superuser_validates_like_the_api(admin_cli: Admin) -> None:
    run = await admin_cli(
        "create-superuser", "--email", "p@example.com", "--username", "p", "--password", "weak"
    )
    assert run.code == 2
    assert "username" in run.err
    assert "password" in run.err
    assert await admin_cli.db.users.count_documents({}) == 0


async def test_export_round_trips_through_seed(
    admin_cli: Admin, tmp_path: Path, mongodb_url: str
) -> None:
    assert (await admin_cli("seed", EXAMPLE)).code == 0
    dump = tmp_path / "dump.ndjson"
    exported = await admin_cli("export", "--with-hashes", "--output", dump)
    assert exported.code == 0, exported.err
    assert "Exported 2 users and 4 items." in exported.err
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["user"] * 2 + ["item"] * 4

    name = f"test_{uuid.uuid4().hex[:16]}"
    other = Admin({**admin_cli.env, "MONGODB_DB": name}, admin_cli.db.client[name])
    try:
        imported = await other("seed", dump)
        assert imported.code == 0, imported.err
        assert await snapshot(other.db) == await snapshot(admin_cli.db)
    finally:
        await admin_cli.db.client.drop_database(name)


async def test_an_export_with_hashes_is_readable_by_its_owner_alone(
    admin_cli: Admin, tmp_path: Path
) -> None:
    """Mode 0600 under the usual umask (022), also over an existing file that was not."""
    assert (await admin_cli("seed", EXAMPLE)).code == 0
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    fresh, existing = dumps / "fresh.ndjson", dumps / "existing.ndjson"
    existing.write_text("an older dump\n")
    existing.chmod(0o644)
    for dump in (fresh, existing):
        run = await admin_cli("export", "--with-hashes", "--output", dump, umask=0o022)
        assert run.code == 0, run.err
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        assert dump.read_text().count('"hashed_password": "$2b$') == 2
    assert sorted(os.listdir(dumps)) == ["existing.ndjson", "fresh.ndjson"]  # no temporary left


async def test_export_leaves_hashes_out_by_default(admin_cli: Admin) -> None:
    await admin_cli("seed", EXAMPLE)
    run = await admin_cli("export", "--no-items")
    assert run.code == 0
    users = [json.loads(line) for line in run.out.splitlines()]
    assert [user["username"] for user in users] == ["ada", "grace"]
    assert all("hashed_password" not in user for user in users)


async def test_users_without_passwords_import_locked(admin_cli: Admin, tmp_path: Path) -> None:
    source = write_ndjson(
        tmp_path / "u.ndjson", [{"kind": "user", "email": "n@example.com", "username": "nopass"}]
    )
    assert (await admin_cli("seed", source)).code == 0
    user = await admin_cli.db.users.find_one({"username": "nopass"})
    assert user is not None
    assert user["hashed_password"].startswith("!no-password:")


async def test_outbox_counts_and_retries_dead_messages(admin_cli: Admin) -> None:
    now = datetime.now(UTC)
    base = {
        "kind": "t",
        "to": "x@example.com",
        "subject": "s",
        "text": "t",
        "html": "h",
        "attempts": 8,
        "next_attempt_at": now,
        "created_at": now,
    }
    await admin_cli.db.outbox.insert_many(
        [
            {**base, "message_id": f"<{i}@docstore>", "status": status}
            for i, status in enumerate(["dead", "dead", "sent", "pending"])
        ]
    )
    shown = await admin_cli("outbox")
    assert shown.code == 0, shown.err
    assert {line.split()[0]: int(line.split()[1]) for line in shown.out.splitlines()} == {
        "pending": 1,
        "sending": 0,
        "sent": 1,
        "dead": 2,
    }
    retried = await admin_cli("outbox", "--retry-dead")
    assert "Queued 2 dead messages again." in retried.out
    assert await admin_cli.db.outbox.count_documents({"status": "pending", "attempts": 0}) == 2


OWNER = {"kind": "user", "email": "o@example.com", "username": "owner", "password": "Good-pass-1"}


async def test_reseeding_changed_content_gives_a_new_version_and_only_then(
    admin_cli: Admin, tmp_path: Path
) -> None:
    """An old ETag must not match changed content; unchanged content keeps its version."""
    lines = [
        OWNER,
        {"kind": "item", "owner": "owner", "title": "kept", "data": {"n": 1}},
        {"kind": "item", "owner": "owner", "title": "changed", "data": {"n": 1}},
    ]
    assert (await admin_cli("seed", write_ndjson(tmp_path / "a.ndjson", lines))).code == 0
    before = {doc["title"]: doc async for doc in admin_cli.db.items.find()}
    lines[2] = {**lines[2], "data": {"n": 2}}
    again = await admin_cli("seed", write_ndjson(tmp_path / "b.ndjson", lines))
    assert again.code == 0
    assert "wrote 0 users and 1 items" in again.out
    after = {doc["title"]: doc async for doc in admin_cli.db.items.find()}
    assert after["kept"] == before["kept"]
    changed, was = after["changed"], before["changed"]
    assert (changed["version"], changed["data"]) == (was["version"] + 1, {"n": 2})
    assert changed["updated_at"] > was["updated_at"]
    assert changed["created_at"] == was["created_at"]


async def test_a_key_twice_in_one_batch_is_one_item_the_later_line(
    admin_cli: Admin, tmp_path: Path
) -> None:
    lines = [
        OWNER,
        {"kind": "item", "owner": "owner", "title": "twice", "data": {"n": 1}},
        {"kind": "item", "owner": "owner", "title": "twice", "data": {"n": 2}},
    ]
    assert (await admin_cli("seed", write_ndjson(tmp_path / "a.ndjson", lines))).code == 0
    stored = [doc async for doc in admin_cli.db.items.find({"title": "twice"})]
    assert [(doc["data"], doc["version"]) for doc in stored] == [({"n": 2}, 1)]


async def test_a_seed_line_cannot_rewrite_another_owners_item(
    admin_cli: Admin, tmp_path: Path
) -> None:
    users = [
        {"kind": "user", "email": f"{n}@example.com", "username": n, "password": "Good-pass-1"}
        for n in ("alice", "bobby")
    ]
    assert (await admin_cli("seed", write_ndjson(tmp_path / "u.ndjson", users))).code == 0
    first = [{"kind": "item", "owner": "bobby", "title": "bob's", "data": {"n": 1}}]
    assert (await admin_cli("seed", write_ndjson(tmp_path / "a.ndjson", first))).code == 0
    bobs = await admin_cli.db.items.find_one({"title": "bob's"})
    assert bobs is not None
    takeover = [{"kind": "item", "owner": "alice", "id": str(bobs["_id"]), "title": "mine now"}]
    run = await admin_cli("seed", write_ndjson(tmp_path / "b.ndjson", takeover))
    assert run.code == 1
    assert "belongs to another owner" in run.err
    assert await admin_cli.db.items.find_one({"_id": bobs["_id"]}) == bobs


async def test_reseeding_a_change_of_type_alone_is_a_change(
    admin_cli: Admin, tmp_path: Path
) -> None:
    """1 and true are equal to Python, not to JSON: the new value must be written."""
    lines = [OWNER, {"kind": "item", "owner": "owner", "title": "t", "data": {"ok": 1}}]
    assert (await admin_cli("seed", write_ndjson(tmp_path / "a.ndjson", lines))).code == 0
    lines[1] = {**lines[1], "data": {"ok": True}}
    assert (await admin_cli("seed", write_ndjson(tmp_path / "b.ndjson", lines))).code == 0
    stored = await admin_cli.db.items.find_one({"title": "t"})
    assert stored is not None
    assert (stored["data"], stored["version"]) == ({"ok": True}, 2)

"""Seed and export carry shares: `"shares": [{"user": <email>, "role": ...}]` on an item."""

import json
from pathlib import Path

from tests.admin.conftest import EXAMPLE, Admin, write_ndjson


async def test_export_writes_each_items_shares_by_email(admin_cli: Admin, tmp_path: Path) -> None:
    assert (await admin_cli("seed", EXAMPLE)).code == 0
    dump = tmp_path / "dump.ndjson"
    assert (await admin_cli("export", "--output", dump)).code == 0
    items = {
        line["title"]: line
        for line in map(json.loads, dump.read_text().splitlines())
        if line["kind"] == "item"
    }
    bernoulli = items["Bernoulli numbers program"]["shares"]
    assert [(s["user"], s["role"]) for s in bernoulli] == [("grace@example.com", "editor")]
    assert items["First compiler"]["shares"] == []
    stored = await admin_cli.db.items.find_one({"title": "Bernoulli numbers program"})
    grace = await admin_cli.db.users.find_one({"username": "grace"})
    assert stored is not None
    assert grace is not None
    assert stored["readers"] == [stored["owner_id"], grace["_id"]]


async def test_a_seed_record_sets_exactly_its_shares(admin_cli: Admin, tmp_path: Path) -> None:
    assert (await admin_cli("seed", EXAMPLE)).code == 0
    title = "Bernoulli numbers program"
    changed = write_ndjson(
        tmp_path / "shares.ndjson",
        [
            {"kind": "item", "owner": "ada", "title": title, "shares": []},
            {"kind": "item", "owner": "grace", "title": "Moth in relay 70"},  # left as is
        ],
    )
    run = await admin_cli("seed", changed)
    assert run.code == 0, run.err
    stored = await admin_cli.db.items.find_one({"title": title})
    assert stored is not None
    assert (stored["shares"], stored["readers"]) == ([], [stored["owner_id"]])
    moth = await admin_cli.db.items.find_one({"title": "Moth in relay 70"})
    assert moth is not None
    assert [s["role"] for s in moth["shares"]] == ["viewer"]


async def test_a_share_with_nobody_or_the_owner_fails_its_line(
    admin_cli: Admin, tmp_path: Path
) -> None:
    assert (await admin_cli("seed", EXAMPLE)).code == 0
    bad = write_ndjson(
        tmp_path / "bad.ndjson",
        [
            {
                "kind": "item",
                "owner": "ada",
                "title": title,
                "shares": [{"user": user, "role": role}],
            }
            for title, user, role in (
                ("x", "ghost", "viewer"),
                ("y", "ada", "editor"),
                ("z", "grace", "owner"),
            )
        ],
    )
    run = await admin_cli("seed", bad)
    assert "unknown user 'ghost' in shares" in run.out + run.err
    assert "owner cannot be one of its sharees" in run.out + run.err
    assert "3 errors" in run.out
    assert await admin_cli.db.items.count_documents({"title": {"$in": ["x", "y", "z"]}}) == 0


async def test_seeding_an_id_that_is_in_the_trash_fails_its_line(
    admin_cli: Admin, tmp_path: Path
) -> None:
    """A second item of that id could never be restored over (nor the first restored)."""
    assert (await admin_cli("seed", EXAMPLE)).code == 0
    stored = await admin_cli.db.items.find_one({"title": "First compiler"})
    assert stored is not None
    await admin_cli.db.trash.insert_one(stored)  # as DELETE leaves it
    await admin_cli.db.items.delete_one({"_id": stored["_id"]})
    again = write_ndjson(
        tmp_path / "again.ndjson",
        [{"kind": "item", "owner": "grace", "id": str(stored["_id"]), "title": "again"}],
    )
    run = await admin_cli("seed", again)
    assert run.code != 0
    assert "is in the trash" in run.err
    assert await admin_cli.db.items.count_documents({"_id": stored["_id"]}) == 0

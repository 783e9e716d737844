"""What seed writes is kept in the items' history too, as an admin script's change
(`changed_by: null`)."""

import uuid
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.admin.conftest import EXAMPLE, Admin, admin_env, write_ndjson
from tests.conftest import fail_next


async def test_seeded_items_and_their_reseeded_content_are_in_their_history(
    admin_cli: Admin, tmp_path: Path
) -> None:
    assert (await admin_cli("seed", EXAMPLE)).code == 0
    items = [doc async for doc in admin_cli.db.items.find()]
    versions = [doc async for doc in admin_cli.db.versions.find()]
    assert len(versions) == len(items) > 0
    by_item = {doc["item_id"]: doc for doc in versions}
    for item in items:
        kept = by_item[item["_id"]]
        assert (kept["version"], kept["change"], kept["changed_by"]) == (
            item["version"],
            "created",
            None,
        )
        assert (kept["title"], kept["data"]) == (item["title"], item["data"])
    title = "First compiler"
    changed = write_ndjson(
        tmp_path / "changed.ndjson",
        [{"kind": "item", "owner": "grace", "title": title, "data": {"reseeded": True}}],
    )
    run = await admin_cli("seed", "--overwrite", changed)
    assert run.code == 0, run.out + run.err
    item = await admin_cli.db.items.find_one({"title": title})
    assert item is not None
    found = admin_cli.db.versions.find({"item_id": item["_id"]}).sort("version", -1)
    history = [(doc["version"], doc["change"], doc["changed_by"]) async for doc in found]
    assert history == [(item["version"], "replaced", None), (item["version"] - 1, "created", None)]
    newest = await admin_cli.db.versions.find_one(
        {"item_id": item["_id"], "version": item["version"]}
    )
    assert newest is not None
    assert newest["data"] == {"reseeded": True}


async def test_a_seed_batch_cut_short_leaves_neither_items_nor_versions(
    failing_server: str, tmp_path: Path
) -> None:
    """A batch's items and their versions are one transaction: a fault on the history
    write (a failpoint on `update`; new items are `insert`s) leaves neither."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(failing_server, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = Admin(admin_env(failing_server, name, tmp_path), client[name])
    try:
        assert (await admin("seed", EXAMPLE)).code == 0  # the users, indexes and items
        fresh = write_ndjson(
            tmp_path / "fresh.ndjson",
            [{"kind": "item", "owner": "ada", "title": f"fresh {n}"} for n in range(3)],
        )
        await fail_next(client, "update")
        cut = await admin("seed", fresh)
        assert cut.code != 0
        assert await admin.db.items.count_documents({"title": {"$regex": "^fresh"}}) == 0
        assert await admin.db.versions.count_documents({"title": {"$regex": "^fresh"}}) == 0
        again = await admin("seed", fresh)
        assert again.code == 0, again.out + again.err
        assert await admin.db.versions.count_documents({"title": {"$regex": "^fresh"}}) == 3
    finally:
        await client.drop_database(name)
        await client.close()

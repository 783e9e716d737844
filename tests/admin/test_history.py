"""What seed writes is kept in the items' history too, as an admin script's change
(`changed_by: null`)."""

from pathlib import Path

from tests.admin.conftest import EXAMPLE, Admin, write_ndjson


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

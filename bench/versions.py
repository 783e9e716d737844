"""What history costs in storage (scripts/bench --versions N): one item of about 10 KiB
made through the API, then changed N times (one key of its data each time), and the
stored size of its versions against the item's own."""

from typing import Any

import bson
import httpx2
from bson import ObjectId
from pymongo import MongoClient

from bench.harness import DB, Setup

ITEM_BYTES = 10 * 1024


def report(setup: Setup, changes: int) -> None:
    auth = {"Authorization": f"Bearer {setup.token}"}
    # About 10 KiB of JSON: 80 keys of 120 characters (text compresses, so it is varied).
    data = {f"k{n}": ObjectId().binary.hex() * 5 for n in range(80)}
    with httpx2.Client(base_url=setup.targets["app"], headers=auth, timeout=60) as api:
        made = api.post("/api/v1/items", json={"title": "ten KiB", "data": data})
        assert made.status_code == 201, made.text
        item_id = made.json()["id"]
        for n in range(changes):
            patch = {"data": {"k0": f"change {n}"}}
            changed = api.patch(f"/api/v1/items/{item_id}", json=patch)
            assert changed.status_code == 200, changed.text
        history = api.get(f"/api/v1/items/{item_id}/versions", params={"limit": 100}).json()
    client: MongoClient[dict[str, Any]] = MongoClient(setup.mongodb_url, tz_aware=True)
    with client:
        db = client[DB]
        item = db.items.find_one({"_id": ObjectId(item_id)})
        assert item is not None
        versions = list(db.versions.find({"item_id": ObjectId(item_id)}))
        stats = db.command("collStats", "versions")
    item_size = len(bson.encode(item))
    sizes = [len(bson.encode(v)) for v in versions]
    print(f"\nan item of {item_size:,} bytes (BSON), changed {changes} times through the API:")
    print(f"  versions stored: {len(versions)} (shown: {len(history['items'])} on one page)")
    print(f"  their BSON: {sum(sizes):,} bytes, {sum(sizes) / len(sizes):,.0f} a version")
    print(f"  per byte of item: {sum(sizes) / item_size:.1f}")
    print(
        "  collStats of versions: size {:,}, storageSize {:,}, totalIndexSize {:,}".format(
            stats.get("size", 0), stats.get("storageSize", 0), stats.get("totalIndexSize", 0)
        )
    )

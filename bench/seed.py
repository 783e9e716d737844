"""Seeding (scripts/bench --seed N): `docstore-admin seed` of N new items against a raw
floor: PyMongo's insert_many of the same documents (content, search words, dates)
and of their first versions into collections with the same indexes, on the same
server. Prints items/s of both
and the ratio (issue target: the seed at 0.7x the floor or better).
"""

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import MongoClient

from bench.harness import Setup
from documents import Item, ItemVersion
from documents.search import search_terms

FLOOR_DB = "bench_floor"


def report(setup: Setup, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "items.ndjson"
        records = [_record(n) for n in range(count)]
        lines.write_text("".join(json.dumps(record) + "\n" for record in records))
        command = [str(Path(sys.executable).with_name("docstore-admin")), "seed", str(lines)]
        started = time.perf_counter()
        done = subprocess.run(command, env=setup.env, capture_output=True, text=True, check=False)
        seeded = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"seed failed:\n{done.stdout}\n{done.stderr}")
    floor = _floor(setup, records)
    print(f"\nseed of {count:,} new items (one owner), one run each\n")
    print(f"{'docstore-admin seed':<34}{seeded:>8.1f} s{count / seeded:>10.0f} items/s")
    print(f"{'floor: insert_many + versions':<34}{floor:>8.1f} s{count / floor:>10.0f} items/s")
    print(f"{'ratio (seed speed / floor speed)':<34}{floor / seeded:>10.2f}")
    print((done.stdout + done.stderr).strip().splitlines()[-1])


def _record(n: int) -> dict[str, Any]:
    return {
        "kind": "item",
        "owner": "bench",
        "title": f"seeded {n}",
        "tags": ["seed", f"s{n % 10}"],
        "data": {"n": n, "nested": {"ok": True}},
    }


def _floor(setup: Setup, records: list[dict[str, Any]]) -> float:
    """The same documents as the seed stores them, and their first versions, written raw
    in batches of 5,000 into fresh collections with the items' and versions' indexes
    (built before, as the app's are)."""
    client: MongoClient[dict[str, Any]] = MongoClient(setup.mongodb_url, tz_aware=True)
    with client:
        client.drop_database(FLOOR_DB)
        items = client[FLOOR_DB].items
        items.create_indexes(Item.Settings.indexes)
        versions = client[FLOOR_DB].versions
        versions.create_indexes(ItemVersion.Settings.indexes)
        owner, now = ObjectId(), datetime.now(UTC)
        docs = [_stored(owner, record, now) for record in records]
        started = time.perf_counter()
        for low in range(0, len(docs), 5000):
            batch = docs[low : low + 5000]
            items.insert_many(batch, ordered=False)
            versions.insert_many([_version(doc) for doc in batch], ordered=False)
        took = time.perf_counter() - started
        client.drop_database(FLOOR_DB)
    return took


def _version(doc: dict[str, Any]) -> dict[str, Any]:
    kept = {k: doc[k] for k in ("owner_id", "title", "description", "tags", "data", "created_at")}
    return kept | {
        "_id": f"{doc['_id']}:1", "item_id": doc["_id"], "version": 1,
        "changed_at": doc["updated_at"], "changed_by": None, "change": "created",
    }  # fmt: skip


def _stored(owner: ObjectId, record: dict[str, Any], now: datetime) -> dict[str, Any]:
    title, tags = record["title"], record["tags"]
    return {
        "_id": ObjectId(), "owner_id": owner, "title": title, "description": None, "tags": tags,
        "data": record["data"], "search_terms": search_terms(title, None, tags),
        "created_at": now, "updated_at": now, "version": 1,
    }  # fmt: skip

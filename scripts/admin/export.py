"""Export users and items as NDJSON in the seed format, so `seed` re-imports them as they were.

Streams from database cursors in batches: memory stays flat however large the data.
"""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from api.items import policy
from documents import Item, User

BATCH = 1000
USER_FIELDS = ("email", "username", "full_name", "is_active", "is_superuser", "email_verified")
ITEM_FIELDS = ("title", "description", "tags", "data", "version")


async def export(
    out: TextIO,
    users: bool,
    items: bool,
    with_hashes: bool,
    advance: Callable[[int], None] = lambda _: None,
) -> dict[str, int]:
    counts = {"user": 0, "item": 0}
    if users:
        async for batch in _batches(User.get_pymongo_collection(), {}):
            _write(out, [_user_record(doc, with_hashes) for doc in batch])
            counts["user"] += len(batch)
            advance(len(batch))
    if items:
        # The operator's export: every item, as the access policy lets an admin read them.
        async for batch in _batches(Item.get_pymongo_collection(), policy.EVERYONE.filter):
            owners = await _emails({doc["owner_id"] for doc in batch})
            _write(out, [_item_record(doc, owners) for doc in batch])
            counts["item"] += len(batch)
            advance(len(batch))
    return counts


async def total(users: bool, items: bool) -> int:
    count = 0
    for wanted, model in ((users, User), (items, Item)):
        if wanted:
            count += await model.get_pymongo_collection().estimated_document_count()
    return count


async def _batches(
    collection: AsyncCollection[dict[str, Any]], query: dict[str, Any]
) -> AsyncIterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    async for doc in collection.find(query, batch_size=BATCH).sort("_id", 1):
        batch.append(doc)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _emails(ids: set[ObjectId]) -> dict[ObjectId, str]:
    found = User.get_pymongo_collection().find({"_id": {"$in": list(ids)}}, {"email": 1})
    return {doc["_id"]: doc["email"] async for doc in found}


def _user_record(doc: dict[str, Any], with_hashes: bool) -> dict[str, Any]:
    record = {"kind": "user", "id": str(doc["_id"]), **{f: doc.get(f) for f in USER_FIELDS}}
    record |= {"created_at": _time(doc["created_at"]), "updated_at": _time(doc["updated_at"])}
    if with_hashes:
        record["hashed_password"] = doc["hashed_password"]
    return record


def _item_record(doc: dict[str, Any], owners: dict[ObjectId, str]) -> dict[str, Any]:
    record = {"kind": "item", "id": str(doc["_id"]), "owner": owners.get(doc["owner_id"])}
    record |= {field: doc.get(field) for field in ITEM_FIELDS}
    record |= {"created_at": _time(doc["created_at"]), "updated_at": _time(doc["updated_at"])}
    return record


def _time(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def _write(out: TextIO, records: list[dict[str, Any]]) -> None:
    out.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))

"""Export users and items as NDJSON in the seed format, so `seed` re-imports them as they were.

Streams from database cursors in batches: memory stays flat however large the data.
"""

import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from api.items import policy, sharing
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
            people = {doc["owner_id"] for doc in batch}
            people |= {share.user_id for doc in batch for share in sharing.shares_of(doc)}
            owners = await _emails(people)
            _write(out, [_item_record(doc, owners) for doc in batch])
            counts["item"] += len(batch)
            advance(len(batch))
    return counts


@contextmanager
def open_output(path: Path, private: bool) -> Iterator[TextIO]:
    """The file `path`, written whole or not at all, and readable by its owner alone when
    `private` (password hashes): mode 0600 from the moment it exists, whatever the umask
    or the mode of a file it replaces. (Truncating an existing file would keep that
    file's mode, 0644 say; a chmod afterwards would leave the hashes readable until it.)
    A pipe or device is written directly: it holds nothing once read."""
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as out:
            yield out
        return
    target = path.resolve()  # a symlink keeps pointing at the dump
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(temporary, flags, 0o600 if private else 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            yield out
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
    record: dict[str, Any] = {"kind": "item", "id": str(doc["_id"])}
    record["owner"] = owners.get(doc["owner_id"])
    record |= {field: doc.get(field) for field in ITEM_FIELDS}
    record |= {"created_at": _time(doc["created_at"]), "updated_at": _time(doc["updated_at"])}
    record["shares"] = [  # by email, as seed reads them (a record's field, not a filter)
        {"user": owners[share.user_id], "role": share.role.value}
        | {"created_at": _time(share.created_at), "updated_at": _time(share.updated_at)}
        for share in sharing.shares_of(doc)
        if share.user_id in owners
    ]
    return record


def _time(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def _write(out: TextIO, records: list[dict[str, Any]]) -> None:
    out.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))

"""Writing an item's history: every change keeps the item as it left it, in the same
transaction as the change (the caller runs one), so there is never a change without its
version nor a version of a change that did not happen.

A version is a full snapshot, not a diff: reading one is one document, keeping the
newest N is deleting the older ones (no chain of diffs to rebuild), and a version
another tool mangled costs that version, not every version after it.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import DeleteMany, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession

from api.items import policy
from documents import Item, ItemVersion
from documents.version import ChangeKind

SNAPSHOT = ("owner_id", "title", "description", "tags", "data", "created_at")
Work = Callable[[AsyncClientSession | None], Awaitable[None]]
Atomically = Callable[[Work], Awaitable[None]]


def within(session: AsyncClientSession | None) -> Atomically:
    """Run work in the transaction (or the standalone order) a caller has begun."""

    async def run(work: Work) -> None:
        await work(session)

    return run


@dataclass(frozen=True)
class Change:
    """What a write records: the kind of change, who made it (None: an admin script),
    and how many versions an item keeps (HISTORY_MAX_VERSIONS)."""

    kind: ChangeKind
    by: ObjectId | None
    keep: int

    def as_(self, kind: ChangeKind) -> "Change":
        return Change(kind, self.by, self.keep)


# Versions past the newest HISTORY_MAX_VERSIONS are deleted by every tenth change, in
# its transaction: one more command then, none the nine times between. Reads show the
# newest HISTORY_MAX_VERSIONS exactly (`kept`); up to nine more wait for the next trim.
TRIM_EVERY = 10


def version_id(item_id: object, version: int) -> str:
    """A version's `_id`: its item's and its number, whatever HISTORY_MAX_VERSIONS is."""
    return f"{item_id}:{version}"


def snapshot(stored: Mapping[str, Any], change: Change) -> list[ReplaceOne[Any] | DeleteMany]:
    """The writes that keep `stored` (an item as a change left it) as its version, and
    trim the versions that fall out of the newest `change.keep`, every TRIM_EVERY."""
    version = int(stored["version"])
    doc: dict[str, Any] = {name: stored.get(name) for name in SNAPSHOT}
    doc |= {"item_id": stored["_id"], "version": version, "changed_at": stored["updated_at"]}
    doc |= {"changed_by": change.by, "change": change.kind}
    # An upsert, not an insert: a version of this number left by a crash on a standalone
    # server (the item written, its version not) is written over, not a duplicate key.
    writes: list[ReplaceOne[Any] | DeleteMany] = [
        ReplaceOne({"_id": version_id(stored["_id"], version)}, doc, upsert=True)
    ]
    if version > change.keep and version % TRIM_EVERY == 0:
        old = {"item_id": stored["_id"], "version": {"$lte": version - change.keep}}
        writes.append(DeleteMany(old))
    return writes


async def record(
    stored: Iterable[Mapping[str, Any]], change: Change, session: AsyncClientSession | None
) -> None:
    """Keep each of these items, as written, as its newest version."""
    writes = [write for doc in stored for write in snapshot(doc, change)]
    if not writes:
        return
    # One `update` command, however many (and a `delete` when some are trimmed).
    await ItemVersion.get_pymongo_collection().bulk_write(writes, ordered=True, session=session)


def kept(item: Item, keep: int) -> dict[str, Any]:
    """The versions an item shows: its own (its id, its owner: another item a tool wrote
    with a trashed item's id gets none of the trashed one's), not in the trash with it,
    the newest `keep` up to its current version (one whose change did not land is not
    shown)."""
    current = item.version
    return {
        "item_id": item.id,
        **policy.owned_by(item.owner_id),
        "purge_at": {"$exists": False},
        "version": {"$gt": current - keep, "$lte": current, "$type": ["int", "long"]},
    }


async def forget(item_ids: list[Any], session: AsyncClientSession | None) -> None:
    """Remove these items' history (a permanent delete, a purge)."""
    if item_ids:
        await ItemVersion.get_pymongo_collection().delete_many(
            {"item_id": {"$in": item_ids}}, session=session
        )


async def purge_with_trash(
    item_id: ObjectId, purge_at: datetime | None, session: AsyncClientSession | None
) -> None:
    """While an item is in the trash its history expires with it (the TTL index on
    `purge_at`); a restore (None) keeps it again."""
    change = {"$set": {"purge_at": purge_at}} if purge_at else {"$unset": {"purge_at": ""}}
    await ItemVersion.get_pymongo_collection().update_many(
        {"item_id": item_id}, change, session=session
    )


async def remove_history_of(owner_id: ObjectId, session: AsyncClientSession | None) -> None:
    """A deleted account's items' history."""
    await ItemVersion.get_pymongo_collection().delete_many(
        policy.owned_by(owner_id), session=session
    )

"""Seed users and items: validated by the API's own models, written on natural keys in batches.

Natural keys: a user's email (case-insensitive); an item's given `id`, else its owner and title.
What a record may change in what is already stored is `reseed`'s to say: re-running a file
changes nothing, and never rolls back what changed since it was seeded.
"""

import asyncio
from collections.abc import Iterable
from typing import Any

from bson import ObjectId
from pydantic import ValidationError
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError

from api.core.database import has_transactions
from api.items import history, policy, sharing
from api.items.writes import identical, stored_content
from documents import Item, TrashedItem, User
from documents.base import utcnow
from documents.user import CASE_INSENSITIVE
from scripts.admin import batches, reseed
from scripts.admin.batches import Options, Report
from scripts.admin.records import ItemRecord, RawRecord, SeedRecord, UserRecord
from scripts.admin.seed_users import write_users


class Seeder:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.report = Report()
        self._users: list[tuple[RawRecord, UserRecord]] = []
        self._items: list[tuple[RawRecord, ItemRecord]] = []
        self._pending_owners: set[str] = set()  # users a dry run would have created
        self._transactions: bool | None = None  # whether the server has them, once asked

    async def add(self, raw: RawRecord) -> None:
        if raw.error:
            self.report.fail(raw, raw.error)
            return
        try:
            record = SeedRecord.validate_python(raw.value)
        except ValidationError as error:
            self.report.fail(raw, _describe(error))
            return
        self.report.valid += 1
        if isinstance(record, UserRecord):
            self._users.append((raw, record))
        else:
            self._items.append((raw, record))
        if len(self._users) + len(self._items) >= self.options.batch_size:
            await self.flush()

    async def flush(self) -> None:
        # Users first: items in the same batch may belong to them.
        users, self._users = self._users, []
        items, self._items = self._items, []
        if users:
            new = await write_users(users, self.options, self.report)
            if self.options.dry_run:
                self._pending_owners.update(r.email.lower() for r in new)
                self._pending_owners.update(r.username.lower() for r in new)
        if items:
            await self._write_items(items)

    async def _write_items(self, batch: list[tuple[RawRecord, ItemRecord]]) -> None:
        """One lookup for the batch's keys, then one bulk write: new items inserted, items
        whose content differs (where `reseed` lets the record change them) updated with a
        new `version` and `updated_at` (so an old ETag no longer matches and subscribers
        see the change), the rest left alone."""
        refs = {record.owner for _, record in batch}
        refs |= {share.user for _, record in batch for share in record.shares or ()}
        owners = await _owner_ids(refs)
        keyed: dict[tuple[Any, Any], tuple[RawRecord, ItemRecord, Any]] = {}
        sharees: dict[int, list[sharing.Given]] = {}
        for raw, record in batch:
            owner_id = owners.get(record.owner.lower())
            if owner_id is not None and record.shares is not None:
                found = self._sharees(raw, record, owner_id, owners)
                if found is None:
                    continue
                sharees[id(record)] = found
            if owner_id is not None:
                # A key seen twice in one batch: the later line wins, as a later run would.
                keyed[_item_key(owner_id, record)] = (raw, record, owner_id)
            elif record.owner.lower() in self._pending_owners:
                self.report.written["item"] += 1  # a dry run's new owner: a new item
            else:
                self.report.fail(raw, f"unknown owner {record.owner!r}")
        if not keyed:
            return
        existing = await _existing_items(list(keyed))
        trashed = await _trashed([value for owner, value in keyed if owner is None])
        operations: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        sources: list[RawRecord] = []
        updates: dict[Any, tuple[RawRecord, int]] = {}  # _id -> its line, the version it sets
        created: dict[Any, dict[str, Any]] = {}  # _id -> a new item, as written
        now = utcnow()
        for key, (raw, record, owner_id) in keyed.items():
            stored = existing.get(key)
            roles = sharees.get(id(record))
            if stored is None and key[1] in trashed:  # a given id: its owner deleted it
                self.report.fail(raw, f"item {record.id} is in the trash (restore it first)")
                continue
            if stored is None:
                new = _new_item(record, owner_id, now)
                created[new["_id"]] = new
                shares = sharing.with_roles(new, roles or [], now)
                operations.append(InsertOne(new | (sharing.acl_written(new, shares) or {})))
                sources.append(raw)
                continue
            if stored["owner_id"] != owner_id:
                self.report.fail(raw, f"item {record.id} belongs to another owner")
                continue
            if update := self._update(raw, record, stored, now):
                operations.append(update[0])
                updates[stored["_id"]] = (raw, update[1])
                sources.append(raw)
            if roles is not None:
                shares = sharing.with_roles(stored, roles, now)
                if (acl := sharing.acl_written(stored, shares)) is not None:
                    condition = {"_id": stored["_id"], "acl_version": stored.get("acl_version")}
                    operations.append(UpdateOne(condition, {"$set": acl}))
                    sources.append(raw)
        if self.options.dry_run:
            self.report.written["item"] += len(operations)
            return
        replaced = {key: version for key, (_, version) in updates.items()}
        landed = await self._write_together(operations, created, replaced)
        if landed is not None:
            self._report_lost_updates(updates, landed, set())
            return
        # No transactions here (a standalone server), or a line failed: line by line,
        # each failure reported, and the history of what landed written after.
        bulk = await batches.write(Item, operations, sources, "item", self.report)
        landed = await self._record_history(created, replaced, None, every_new_one=False)
        self._report_lost_updates(updates, landed, bulk.failed_lines)

    async def _write_together(
        self, operations: list[Any], created: dict[Any, Any], replaced: dict[Any, int]
    ) -> set[Any] | None:
        """The batch's items and their versions in one transaction, where the server has
        transactions: once committed, the changed items whose change landed. None, with
        nothing written, on a standalone server or when any line fails (a transaction
        cannot keep the others)."""
        if not operations:
            return None
        if self._transactions is None:
            self._transactions = await has_transactions(
                Item.get_pymongo_collection().database.client
            )
        if not self._transactions:
            return None
        items = Item.get_pymongo_collection()
        results: list[Any] = []
        landed: set[Any] = set()

        async def work(session: AsyncClientSession) -> None:
            results[:] = [await items.bulk_write(operations, ordered=False, session=session)]
            landed.clear()
            landed.update(
                await self._record_history(created, replaced, session, every_new_one=True)
            )

        try:
            async with items.database.client.start_session() as session:
                await session.with_transaction(work)
        except BulkWriteError:
            return None
        done = results[0]
        self.report.written["item"] += (
            done.inserted_count + done.upserted_count + done.modified_count
        )
        return landed

    async def _record_history(
        self,
        created: dict[Any, dict[str, Any]],
        replaced: dict[Any, int],
        session: Any,
        *,
        every_new_one: bool,
    ) -> set[Any]:
        """Keep what landed in the items' history (`changed_by: null`): every new item
        when the write of all of them succeeded, else those found at the version this
        batch gave them; each changed item found at the version this batch gave it (a
        later write would have moved it on, and kept its own version). Returns the
        changed items whose change landed (one read serves the history and the report)."""
        keep = self.options.history_max_versions
        if every_new_one:
            new = list(created.values())
        else:
            new = await _at_versions({k: doc["version"] for k, doc in created.items()}, session)
        await history.record(new, history.Change("created", None, keep), session)
        changed = await _at_versions(replaced, session)
        await history.record(changed, history.Change("replaced", None, keep), session)
        return {doc["_id"] for doc in changed}

    def _sharees(
        self, raw: RawRecord, record: ItemRecord, owner_id: Any, users: dict[str, Any]
    ) -> list[sharing.Given] | None:
        """The record's shares by user id; None (the line failed) when one names nobody,
        or the owner. A user this dry run would create counts as found."""
        found: list[sharing.Given] = []
        for share in record.shares or ():
            user_id = users.get(share.user.lower())
            if user_id is None and share.user.lower() in self._pending_owners:
                continue
            if user_id is None:
                self.report.fail(raw, f"unknown user {share.user!r} in shares")
                return None
            if user_id == owner_id:
                self.report.fail(raw, "an item's owner cannot be one of its sharees")
                return None
            found.append(sharing.Given(user_id, share.role, share.created_at, share.updated_at))
        return found

    def _update(
        self, raw: RawRecord, record: ItemRecord, stored: dict[str, Any], now: Any
    ) -> tuple[UpdateOne, int] | None:
        """The write that gives the stored item the record's content, and the version it
        sets; or None: the same content already (no new version), or `reseed` keeps
        what is stored."""
        content = reseed.item_content(record, stored, self.options.overwrite)
        if all(identical(stored.get(name), value) for name, value in content.items()):
            return None
        if kept := reseed.item_kept(record, stored, self.options.overwrite):
            self.report.kept += 1
            self.report.notice(raw, kept)
            return None
        # Never before the last write; a date-less document another tool wrote: now.
        updated_at = max(now, stored.get("updated_at") or now)
        version = reseed.new_version(record, stored)
        condition = {"_id": stored["_id"], "owner_id": stored["owner_id"]}
        condition["version"] = stored.get("version", 1)
        changes = {**content, "updated_at": updated_at, "version": version}
        return UpdateOne(condition, {"$set": changes | {"seeded": {"version": version}}}), version

    def _report_lost_updates(
        self,
        updates: dict[Any, tuple[RawRecord, int]],
        landed: set[Any],
        failed: set[tuple[str, int]],
    ) -> None:
        """An update whose version check found another version (a write through the API
        in between, or two lines naming one item) changed nothing: say so, per line.
        `landed`: the updated items found at the version their line set."""
        for item_id, (raw, _) in updates.items():
            if item_id not in landed and (raw.source, raw.line) not in failed:
                self.report.fail(raw, f"item {item_id} changed while seeding; run the seed again")


def _item_key(owner_id: Any, record: ItemRecord) -> tuple[Any, Any]:
    """An item's natural key: its given id, else its owner and title."""
    return (None, record.id) if record.id else (owner_id, record.title)


def _new_item(record: ItemRecord, owner_id: Any, now: Any) -> dict[str, Any]:
    created = record.created_at or now
    doc = {**policy.new_item_of(owner_id), **stored_content(record), "created_at": created}
    doc |= {"updated_at": record.updated_at or created, "version": record.version}
    doc["seeded"] = {"version": record.version}  # what reseed compares a later run with
    return {**doc, "_id": record.id or ObjectId()}


async def _existing_items(keys: list[tuple[Any, Any]]) -> dict[tuple[Any, Any], dict[str, Any]]:
    """The stored items of `keys`, by key (content, version, updated_at): one query for
    the given ids, one per owner for titles, each on an index. (Not one `$or` of them:
    the embedded server answers that with a collection scan, 10 s a batch at 20,000
    items, where each of these takes milliseconds.)"""
    titles: dict[Any, list[Any]] = {}
    for owner, value in keys:
        if owner is not None:
            titles.setdefault(owner, []).append(value)
    ids = [value for owner, value in keys if owner is None]
    queries = [{"owner_id": owner, "title": {"$in": named}} for owner, named in titles.items()]
    if ids:
        queries.append({"_id": {"$in": ids}})
    items = Item.get_pymongo_collection()
    found_batches = await asyncio.gather(*(items.find(query).to_list() for query in queries))
    wanted = set(keys)
    found: dict[tuple[Any, Any], dict[str, Any]] = {}
    for doc in (doc for batch in found_batches for doc in batch):
        for key in ((None, doc["_id"]), (doc["owner_id"], doc["title"])):
            if key in wanted:
                found.setdefault(key, doc)
    return found


async def _at_versions(wanted: dict[Any, int], session: Any) -> list[dict[str, Any]]:
    """The items of these ids that are at the version given for each."""
    if not wanted:
        return []
    found = Item.get_pymongo_collection().find({"_id": {"$in": list(wanted)}}, session=session)
    return [doc async for doc in found if doc.get("version") == wanted[doc["_id"]]]


async def _trashed(ids: list[Any]) -> set[Any]:
    """Which of these item ids are in the trash: seeding one again would make a second
    item of that id, which the trash's could then never be restored over."""
    if not ids:
        return set()
    found = TrashedItem.get_pymongo_collection().find({"_id": {"$in": ids}}, {"_id": 1})
    return {doc["_id"] async for doc in found}


async def _owner_ids(refs: Iterable[str]) -> dict[str, Any]:
    refs = list(refs)
    found = User.get_pymongo_collection().find(
        {"$or": [{"email": {"$in": refs}}, {"username": {"$in": refs}}]},
        {"email": 1, "username": 1},
        collation=CASE_INSENSITIVE,
    )
    owners: dict[str, Any] = {}
    async for doc in found:
        owners[doc["email"].lower()] = doc["_id"]
        owners[doc["username"].lower()] = doc["_id"]
    return owners


def _describe(error: ValidationError) -> str:
    parts = []
    for issue in error.errors():
        where = ".".join(str(p) for p in issue["loc"] if p not in ("user", "item"))
        parts.append(f"{where}: {issue['msg']}" if where else issue["msg"])
    return "; ".join(parts)

"""Seed users and items: validated by the API's own models, written on natural keys in batches.

Natural keys: a user's email (case-insensitive); an item's given `id`, else its owner and title.
Re-running the same file therefore changes nothing; an item whose content changed gets a
new version, as an API write would give it.
"""

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from api.accounts.passwords import hash_password
from api.items.writes import identical, stored_content
from documents import Item, ItemCreate, User, UserCreate
from documents.base import ObjectIdParam, utcnow
from documents.user import CASE_INSENSITIVE, Password
from scripts.admin.records import RawRecord

# Marks a stored hash that no password matches (bcrypt refuses it outright).
NO_PASSWORD = "!no-password:"
BCRYPT_HASH = r"^(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}|!no-password:[\w-]+)$"


class UserRecord(UserCreate):
    """A user line. Without a password or hash (an export without --with-hashes), a new
    account gets none that works: it must be reset before anyone can log in."""

    # Lines arrive parsed (Python values, not JSON text): strict mode would refuse their
    # date strings, which JSON itself has no other way to write.
    model_config = ConfigDict(strict=False)

    kind: Literal["user"]
    id: ObjectIdParam | None = None
    password: Password | None = None  # type: ignore[assignment]
    hashed_password: str | None = Field(default=None, pattern=BCRYPT_HASH)
    is_active: bool = True
    email_verified: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if self.password is not None and self.hashed_password is not None:
            raise ValueError("give password or hashed_password, not both")
        return self


class ItemRecord(ItemCreate):
    model_config = ConfigDict(strict=False)  # as UserRecord's

    kind: Literal["item"]
    owner: str = Field(min_length=1, description="The owner's email or username")
    id: ObjectIdParam | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = Field(default=1, ge=1)


SeedRecord = TypeAdapter[UserRecord | ItemRecord](
    Annotated[UserRecord | ItemRecord, Field(discriminator="kind")]
)


@dataclass
class Report:
    valid: int = 0
    written: dict[str, int] = field(default_factory=lambda: {"user": 0, "item": 0})
    errors: list[tuple[str, int, str]] = field(default_factory=list)

    def error_lines(self) -> list[str]:
        """`file:line: reason`, in file order (batches find some errors later than others)."""
        return [f"{source}:{line}: {reason}" for source, line, reason in sorted(self.errors)]


class Seeder:
    def __init__(self, bcrypt_rounds: int, dry_run: bool, batch_size: int = 500) -> None:
        self.rounds, self.dry_run, self.batch_size = bcrypt_rounds, dry_run, batch_size
        self.report = Report()
        self._users: list[tuple[RawRecord, UserRecord]] = []
        self._items: list[tuple[RawRecord, ItemRecord]] = []
        self._pending_owners: set[str] = set()  # users a dry run would have created

    async def add(self, raw: RawRecord) -> None:
        if raw.error:
            self._fail(raw, raw.error)
            return
        try:
            record = SeedRecord.validate_python(raw.value)
        except ValidationError as error:
            self._fail(raw, _describe(error))
            return
        self.report.valid += 1
        if isinstance(record, UserRecord):
            self._users.append((raw, record))
        else:
            self._items.append((raw, record))
        if len(self._users) + len(self._items) >= self.batch_size:
            await self.flush()

    async def flush(self) -> None:
        # Users first: items in the same batch may belong to them.
        users, self._users = self._users, []
        items, self._items = self._items, []
        await self._write_users(users)
        await self._write_items(items)

    def _fail(self, raw: RawRecord, reason: str) -> None:
        self.report.errors.append((raw.source, raw.line, reason))

    async def _write_users(self, batch: list[tuple[RawRecord, UserRecord]]) -> None:
        if not batch:
            return
        if self.dry_run:
            for _, record in batch:
                self._pending_owners.update({record.email.lower(), record.username.lower()})
            return
        existing = await _existing_emails([record.email for _, record in batch])
        hashes = await asyncio.gather(*(self._hash_for(r, existing) for _, r in batch))
        operations = [
            UpdateOne(
                {"email": record.email},
                {
                    "$set": record.model_dump(
                        include={"username", "full_name", "is_active", "is_superuser"}
                    ),
                    "$setOnInsert": _new_user_fields(record, hashed),
                },
                upsert=True,
                collation=CASE_INSENSITIVE,
            )
            for (_, record), hashed in zip(batch, hashes, strict=True)
        ]
        await self._bulk(User, operations, [raw for raw, _ in batch], "user")

    async def _hash_for(self, record: UserRecord, existing: set[str]) -> str:
        # Only new accounts get a hash: re-runs must not re-hash (bcrypt is slow on purpose).
        if record.hashed_password:
            return record.hashed_password
        if record.password is None or record.email.lower() in existing:
            return NO_PASSWORD + secrets.token_urlsafe(16)  # unused for existing accounts
        return await hash_password(record.password, self.rounds)

    async def _write_items(self, batch: list[tuple[RawRecord, ItemRecord]]) -> None:
        """One lookup for the batch's keys, then one bulk write: new items inserted, items
        whose content differs updated with a new `version` and `updated_at` (so an old
        ETag no longer matches and subscribers see the change), the rest left alone."""
        if not batch:
            return
        owners = await _owner_ids({record.owner for _, record in batch})
        keyed: dict[tuple[Any, Any], tuple[RawRecord, ItemRecord, Any]] = {}
        for raw, record in batch:
            owner_id = owners.get(record.owner.lower())
            if owner_id is None:
                if record.owner.lower() not in self._pending_owners:
                    self._fail(raw, f"unknown owner {record.owner!r}")
                continue
            # A key seen twice in one batch: the later line wins, as a later run would.
            keyed[_item_key(owner_id, record)] = (raw, record, owner_id)
        if not keyed:
            return
        existing = await _existing_items(list(keyed))
        operations: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        sources: list[RawRecord] = []
        updates: dict[Any, tuple[RawRecord, int]] = {}  # _id -> its line, the version it sets
        now = utcnow()
        for key, (raw, record, owner_id) in keyed.items():
            content = stored_content(record)
            stored = existing.get(key)
            if stored is None:
                created = record.created_at or now
                doc = {"owner_id": owner_id, **content, "created_at": created}
                doc |= {"updated_at": record.updated_at or created, "version": record.version}
                operations.append(InsertOne({**doc, "_id": record.id} if record.id else doc))
            elif stored["owner_id"] != owner_id:
                self._fail(raw, f"item {record.id} belongs to another owner")
                continue
            elif not all(identical(stored.get(name), value) for name, value in content.items()):
                # Never before the last write; a date-less document another tool wrote: now.
                updated_at = max(now, stored.get("updated_at") or now)
                version = stored.get("version", 1)
                operations.append(
                    UpdateOne(
                        {"_id": stored["_id"], "owner_id": owner_id, "version": version},
                        {"$set": {**content, "updated_at": updated_at, "version": version + 1}},
                    )
                )
                updates[stored["_id"]] = (raw, version + 1)
            else:
                continue  # the same content: no write, no new version
            sources.append(raw)
        if not self.dry_run:
            await self._bulk(Item, operations, sources, "item")
            await self._report_lost_updates(updates)

    async def _report_lost_updates(self, updates: dict[Any, tuple[RawRecord, int]]) -> None:
        """An update whose version check found another version (a write through the API
        in between, or two lines naming one item) changed nothing: say so, per line."""
        if not updates:
            return
        found = Item.get_pymongo_collection().find({"_id": {"$in": list(updates)}}, {"version": 1})
        landed = {doc["_id"] async for doc in found if doc.get("version") == updates[doc["_id"]][1]}
        for item_id, (raw, _) in updates.items():
            if item_id not in landed:  # not counted as written: it matched nothing
                self._fail(raw, f"item {item_id} changed while seeding; run the seed again")

    async def _bulk(
        self, model: type[User | Item], operations: list[Any], sources: list[RawRecord], kind: str
    ) -> None:
        if not operations:
            return
        try:
            result = await model.get_pymongo_collection().bulk_write(operations, ordered=False)
            written = result.upserted_count + result.inserted_count + result.modified_count
            self.report.written[kind] += written
        except BulkWriteError as error:
            details = error.details
            self.report.written[kind] += sum(
                details.get(count, 0) for count in ("nUpserted", "nInserted", "nModified")
            )
            for failure in details.get("writeErrors", []):
                reason = "duplicate of an existing record" if failure.get("code") == 11000 else ""
                self._fail(
                    sources[failure["index"]], reason or failure.get("errmsg", "write failed")
                )


def _item_key(owner_id: Any, record: ItemRecord) -> tuple[Any, Any]:
    """An item's natural key: its given id, else its owner and title."""
    return (None, record.id) if record.id else (owner_id, record.title)


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
    batches = await asyncio.gather(*(items.find(query).to_list() for query in queries))
    wanted = set(keys)
    found: dict[tuple[Any, Any], dict[str, Any]] = {}
    for doc in (doc for batch in batches for doc in batch):
        for key in ((None, doc["_id"]), (doc["owner_id"], doc["title"])):
            if key in wanted:
                found.setdefault(key, doc)
    return found


async def _existing_emails(emails: list[str]) -> set[str]:
    found = User.get_pymongo_collection().find(
        {"email": {"$in": emails}}, {"email": 1}, collation=CASE_INSENSITIVE
    )
    return {doc["email"].lower() async for doc in found}


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


def _new_user_fields(record: UserRecord, hashed: str) -> dict[str, Any]:
    now = utcnow()
    created = record.created_at or now
    fields = {
        "hashed_password": hashed,
        "email_verified": record.email_verified,
        "token_version": 0,
        "created_at": created,
        "updated_at": record.updated_at or created,
    }
    return {**fields, "_id": record.id} if record.id else fields


def _describe(error: ValidationError) -> str:
    parts = []
    for issue in error.errors():
        where = ".".join(str(p) for p in issue["loc"] if p not in ("user", "item"))
        parts.append(f"{where}: {issue['msg']}" if where else issue["msg"])
    return "; ".join(parts)

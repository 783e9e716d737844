"""Seeding users: new accounts inserted (only while still new), existing ones changed only
as `reseed` allows, each update on the condition that what it read is still stored."""

import asyncio
import secrets
from typing import Any

from pymongo import UpdateOne

from api.accounts.passwords import hash_password
from api.items.writes import identical
from documents import User
from documents.base import utcnow
from documents.user import CASE_INSENSITIVE
from scripts.admin import batches, reseed
from scripts.admin.batches import Options, Report
from scripts.admin.records import NO_PASSWORD, RawRecord, UserRecord
from scripts.admin.superuser import describe

Batch = list[tuple[RawRecord, UserRecord]]


async def write_users(batch: Batch, options: Options, report: Report) -> list[UserRecord]:
    """Writes (or, in a dry run, plans) the batch; returns the records of new accounts."""
    # An email twice in one batch: the later line wins, as a later run would.
    keyed = {record.email.lower(): (raw, record) for raw, record in batch}
    stored = await _stored_users(list(keyed))
    new = [(raw, record) for key, (raw, record) in keyed.items() if key not in stored]
    hashes = await asyncio.gather(*(_hash_for(record, options) for _, record in new))
    operations = [_insert(record, hashed) for (_, record), hashed in zip(new, hashes, strict=True)]
    sources = [raw for raw, _ in new]
    updates: dict[Any, tuple[RawRecord, dict[str, Any]]] = {}
    for key, (raw, record) in keyed.items():
        if key in stored and (changes := _changes(raw, record, stored[key], options, report)):
            operations.append(_update(stored[key], changes))
            sources.append(raw)
            updates[stored[key]["_id"]] = (raw, changes)
    if options.dry_run:
        report.written["user"] += len(operations)
        return [record for _, record in new]
    bulk = await batches.write(User, operations, sources, "user", report)
    for index in set(range(len(new))) - bulk.upserted - bulk.failed:
        report.fail(sources[index], "an account with this email appeared while seeding; run again")
    await _report_lost_updates(updates, bulk.failed_lines, report)
    return [record for _, record in new]


def _changes(
    raw: RawRecord, record: UserRecord, stored: dict[str, Any], options: Options, report: Report
) -> dict[str, Any]:
    change = reseed.user_change(record, stored, options.overwrite, options.promote)
    if change.refused:
        report.fail(raw, change.refused)
        return {}
    if change.kept:
        report.kept += 1
        report.notice(raw, reseed.user_kept(record, change.kept))
    if change.promotes:
        verb = "would promote" if options.dry_run else "promoted"
        report.notice(raw, f"{verb} the existing account {describe(stored)} to superuser")
    return change.changes


def _insert(record: UserRecord, hashed: str) -> UpdateOne:
    """An upsert that only inserts: an account registered meanwhile is left as it is."""
    now = utcnow()
    created = record.created_at or now
    doc = {
        **reseed.seeded_user(record),
        "hashed_password": hashed,
        "token_version": 0,
        "created_at": created,
        "updated_at": record.updated_at or created,
        "seeded": reseed.seeded_user(record),
    }
    doc |= {"_id": record.id} if record.id else {}
    return UpdateOne(
        {"email": record.email}, {"$setOnInsert": doc}, upsert=True, collation=CASE_INSENSITIVE
    )


def _update(stored: dict[str, Any], changes: dict[str, Any]) -> UpdateOne:
    """Only if every field it changes still holds what was read (a compare-and-swap)."""
    seeded = {f"seeded.{name}": value for name, value in changes.items()}
    return UpdateOne(
        {"_id": stored["_id"], **{name: stored.get(name) for name in changes}},
        {"$set": {**changes, **seeded, "updated_at": utcnow()}},
    )


async def _hash_for(record: UserRecord, options: Options) -> str:
    # Only new accounts are hashed (bcrypt is slow on purpose), and in a dry run none.
    if record.hashed_password:
        return record.hashed_password
    if record.password is None or options.dry_run:
        return NO_PASSWORD + secrets.token_urlsafe(16)
    return await hash_password(record.password, options.bcrypt_rounds)


async def _report_lost_updates(
    updates: dict[Any, tuple[RawRecord, dict[str, Any]]],
    failed: set[tuple[str, int]],
    report: Report,
) -> None:
    """An update whose condition found other values (a change through the API in
    between) changed nothing: say so, per line."""
    if not updates:
        return
    found = User.get_pymongo_collection().find({"_id": {"$in": list(updates)}})
    landed = {
        doc["_id"]
        async for doc in found
        if all(identical(doc.get(name), value) for name, value in updates[doc["_id"]][1].items())
    }
    for user_id, (raw, _) in updates.items():
        if user_id not in landed and (raw.source, raw.line) not in failed:
            report.fail(raw, "the account changed while seeding; run the seed again")


async def _stored_users(emails: list[str]) -> dict[str, dict[str, Any]]:
    """The stored accounts of these emails, by lower-cased email (not their hashes)."""
    found = User.get_pymongo_collection().find(
        {"email": {"$in": emails}}, {"hashed_password": 0}, collation=CASE_INSENSITIVE
    )
    return {doc["email"].lower(): doc async for doc in found}

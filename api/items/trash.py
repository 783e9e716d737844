"""The trash: `DELETE` moves an item here, `restore` brings it back, purge removes it.

A trashed item lives in its own collection (`trash`), not in `items` with a flag: no
read, list, share, feed or export path of items has to learn to skip it, and its
sharees lose it while it is there simply because it is not an item. Moving is one
transaction of a delete and an insert (where the server has transactions); the feed
sees the delete (`deleted`) and, on restore, an insert it reports as `restored`.
"""

from datetime import timedelta
from typing import Annotated

from bson import ObjectId
from fastapi import APIRouter, Query, Response
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from api.accounts.deps import ItemReader, ItemWriter
from api.core import queue
from api.core.errors import Conflict, DomainError, Forbidden, NotFound, problem_responses
from api.core.pagination import Page, PageQuery, fetch_page, showable, sound_keys
from api.core.services import AppServices
from api.items import history, policy
from api.items.conditional import PreconditionFailed, etag, expected_version
from api.items.deps import ItemId, Unreadable, find_manageable, find_readable, shown
from api.items.history import Change
from api.items.idempotency import forget_answers_holding
from documents import Item, TrashedItem, TrashedItemPublic, User
from documents.base import ObjectIdParam, utcnow
from documents.share import Access

router = APIRouter(prefix="/items", tags=["trash"])
NEWEST_FIRST = [("deleted_at", -1), ("_id", -1)]  # the (owner_id, deleted_at, _id) index
TRASH_FIELDS = ("deleted_at", "purge_at", "deleted_by")
RACED = "The item changed while it was being deleted; try again."
MAX_VERSION = 2**62  # a version past this (another tool's) is not counted on from


class NotInTrash(DomainError):
    status, code, title = 409, "not-in-trash", "Not in the trash"
    detail = "The item is not in the trash: it was never deleted, or is restored already."


class InTrash(DomainError):
    status, code, title = 409, "in-trash", "In the trash already"
    detail = "An item with this id is in the trash already; restore or purge that one first."


class IdTaken(DomainError):
    status, code, title = 409, "id-taken", "Id taken"
    detail = "An item with this id exists again (written by another tool); it stays in the trash."


async def move_to_trash(
    item: Item,
    user: User,
    if_match: str | None,
    keep: timedelta,
    session: AsyncClientSession | None,
) -> None:
    """Move the item into its owner's trash for `keep` (if `user` may still manage it,
    at the version If-Match names). The caller runs this in a transaction; without one
    (a standalone server) the copy is written before the item is deleted, so a crash
    between leaves it in both places, never in neither."""
    expected = expected_version(if_match, item.version)
    condition = {} if expected is None else {"version": expected}
    items, trash = Item.get_pymongo_collection(), TrashedItem.get_pymongo_collection()
    mine = {"_id": item.id, **policy.manageable_by(user)}
    stored = await items.find_one({**mine, **condition}, session=session)
    if stored is None:
        assert item.id is not None
        await find_manageable(item.id, user, session)  # 404 when gone, 403 if no longer yours
        raise PreconditionFailed()  # still there: it is at another version now
    now = utcnow()
    stored |= {"deleted_at": now, "purge_at": now + keep, "deleted_by": user.id}
    try:  # never over an entry already there: a concurrent delete's, or another item's
        await trash.insert_one(stored, session=session)
    except DuplicateKeyError:
        raise InTrash() from None  # (no more commands: a transaction is over after this)
    # As read: the same content and the same shares (a share ended meanwhile must not
    # come back with a restore).
    as_read = {"version": stored.get("version"), "acl_version": stored.get("acl_version")}
    moved = await items.delete_one({**mine, **as_read}, session=session)
    if moved.deleted_count == 0:  # changed since it was read: the copy is this request's
        await trash.delete_one({"_id": item.id, "deleted_at": now}, session=session)
        raise PreconditionFailed() if expected is not None else Conflict(RACED)
    await history.purge_with_trash(stored["_id"], stored["purge_at"], session)


async def purge_trashed(
    item_id: ObjectId, user: User, if_match: str | None, session: AsyncClientSession | None
) -> bool:
    """Delete a trashed item for good (its owner, or a superuser), and the answers kept
    for retries that show it: whether it was in the trash. If-Match names the version it
    was deleted at."""
    trash = TrashedItem.get_pymongo_collection()
    found = await trash.find_one({"_id": item_id, **policy.manageable_by(user)}, session=session)
    if found is None:
        return False
    version = found.get("version")
    expected = expected_version(if_match, version if isinstance(version, int) else 0)
    condition = {} if expected is None else {"version": expected}
    removed = await trash.delete_one({"_id": item_id, **condition}, session=session)
    if removed.deleted_count == 0:
        raise NotFound("item")  # purged or restored meanwhile
    await history.forget([item_id], session)
    await queue.forget_item([item_id], session)
    await forget_answers_holding([item_id], session)
    return True


async def restore(
    item_id: ObjectId, user: User, change: Change, session: AsyncClientSession | None
) -> Item:
    """Put a trashed item back, as it was (same id, content and shares), one version on,
    with its history. The item is written before its trash entry goes (see
    `move_to_trash`)."""
    trash, items = TrashedItem.get_pymongo_collection(), Item.get_pymongo_collection()
    stored = await trash.find_one({"_id": item_id, **policy.manageable_by(user)}, session=session)
    if stored is None:
        await find_readable(item_id, user, session)  # 404 unless it is an item you can read
        raise NotInTrash()
    deleted_at = stored.get("deleted_at")
    for name in TRASH_FIELDS:
        stored.pop(name, None)
    try:  # what goes back must be an item the API can show (another tool's may not be)
        current = Item.model_validate({**stored, "access": None})
        current.model_dump_json()
    except (ValidationError, PydanticSerializationError):
        raise Unreadable() from None
    if current.version >= MAX_VERSION:
        raise Unreadable()
    if await items.find_one({"_id": item_id}, {"_id": 1}, session=session) is not None:
        raise IdTaken()  # another tool wrote an item with its id meanwhile
    later = max(utcnow(), current.updated_at)
    # the feed tells a restore from a create by `restored_at`
    stored |= {"version": current.version + 1, "updated_at": later, "restored_at": later}
    try:
        await items.insert_one(stored, session=session)
    except DuplicateKeyError:  # restored by a concurrent request (no more commands now)
        raise NotInTrash() from None
    await trash.delete_one({"_id": item_id, "deleted_at": deleted_at}, session=session)
    await history.purge_with_trash(item_id, None, session)
    await history.record([stored], change, session)
    access = policy.access(user, stored) or Access.owner
    return shown(stored, access)


@router.get("/trash", responses=problem_responses(401, 403))
async def list_trash(
    user: ItemReader,
    page: PageQuery,
    services: AppServices,
    owner_id: Annotated[
        ObjectIdParam | None, Query(description="Superusers: this owner's trash")
    ] = None,
) -> Page[TrashedItemPublic]:
    """Your deleted items (a superuser: theirs, or `owner_id`'s), most recently deleted
    first, until they are restored or purged (`purge_at`)."""
    trash = TrashedItem.get_pymongo_collection()
    if owner_id is not None and owner_id != user.id and not user.is_superuser:
        raise Forbidden("Only superusers may see someone else's trash.")
    owner = owner_id or user.id
    assert owner is not None
    sound = {**policy.owned_by(owner), **sound_keys("deleted_at")}
    rows, next_cursor, total = await fetch_page(
        trash, sound, NEWEST_FIRST, page, services.cursors, {"search_terms": 0}
    )
    shown = showable(rows, TrashedItemPublic, lambda _: services.metrics.skipped("trash"))
    return Page[TrashedItemPublic](items=shown, next_cursor=next_cursor, total=total)


@router.post("/{item_id}/restore", responses=problem_responses(401, 403, 404, 409))
async def restore_item(
    item_id: ItemId, user: ItemWriter, services: AppServices, response: Response
) -> Item:
    """Bring an item back from your trash: same id, content and shares, `version` + 1.
    Its owner (or a superuser); to anyone else it is not there (404)."""
    restored: list[Item] = []
    change = Change("restored", user.id, services.settings.history_max_versions)

    async def bring_back(session: AsyncClientSession | None) -> None:
        restored[:] = [await restore(item_id, user, change, session)]

    await services.atomically(bring_back)
    response.headers["ETag"] = etag(restored[0].version)
    return restored[0]

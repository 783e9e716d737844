"""Every write of an item's content: one atomic database operation each, nothing lost.

Updates are compare-and-swap on `version`: the new content is computed from the
version read, and written only if that is still the stored version. With If-Match
a mismatch is a 412; without it, we re-read and re-apply (a merge patch onto the
newer item), so concurrent writers never overwrite each other silently.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from bson import ObjectId
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from api.core import queue
from api.core.errors import Conflict, NotFound
from api.core.retry import Retry
from api.items import history, policy
from api.items.conditional import PreconditionFailed, expected_version
from api.items.deps import changeable, find_readable, manageable, shown
from api.items.history import Atomically, Change
from api.items.idempotency import forget_answers_holding
from documents import Item, ItemCreate, ItemMergePatch, User
from documents.base import utcnow
from documents.item import merge_patch
from documents.search import search_terms
from documents.share import Access

# A write that keeps losing the race to other writers of one item tries again for this
# long (not a number of times: under load each round takes longer) before a 409.
RACE_BUDGET_S = 5.0
BACKOFF_S, BACKOFF_MAX_S = 0.002, 0.05
CONTENT = {"title", "description", "tags", "data"}


def identical(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down: Python's `==` takes `True`,
    `1` and `1.0` for one value, and a write that changes only a type must not be lost."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def stored_content(content: ItemCreate) -> dict[str, Any]:
    """The content fields as stored, with the search terms derived from them."""
    fields = content.model_dump(include=CONTENT)
    terms = search_terms(content.title, content.description, content.tags)
    return {**fields, "search_terms": terms}


async def insert_items(
    owner_id: PydanticObjectId,
    contents: list[ItemCreate],
    change: Change,
    session: AsyncClientSession | None,
) -> list[Item]:
    """New items in one round trip (in order) and their first versions in another (the
    caller's transaction holds both)."""
    now = utcnow()
    docs = [
        {**policy.new_item_of(owner_id), **stored_content(content)}
        | {"_id": ObjectId(), "created_at": now, "updated_at": now, "version": 1}
        for content in contents
    ]
    await Item.get_pymongo_collection().insert_many(docs, session=session)
    await history.record(docs, change, session)
    return [shown(doc, Access.owner) for doc in docs]


_ITEM_JSON: TypeAdapter[Item] = TypeAdapter(Item)


def item_json(item: Item) -> bytes:
    """An item's JSON as a response shows it (as FastAPI would serialise it)."""
    return _ITEM_JSON.dump_json(item, by_alias=True)


def validated(content: dict[str, Any]) -> ItemCreate:
    try:
        return ItemCreate.model_validate(content)
    except ValidationError as error:
        raise RequestValidationError(
            [{**issue, "loc": ("body", *issue["loc"])} for issue in error.errors()]
        ) from None


def patched(item: Item, patch: ItemMergePatch) -> ItemCreate:
    content: dict[str, Any] = item.model_dump(include=CONTENT)
    sent = patch.model_dump(exclude_unset=True)
    if "data" in sent:
        content["data"] = merge_patch(item.data, sent.pop("data")) or {}
    if "tags" in sent and sent["tags"] is None:
        sent["tags"] = []
    return validated({**content, **sent})


async def write_content(
    item: Item,
    user: User,
    new_content: Callable[[Item], ItemCreate],
    if_match: str | None,
    change: Change,
    atomically: Atomically,
    session: AsyncClientSession | None = None,
    *,
    even_unchanged: bool = False,
) -> Item:
    """Apply `new_content` to the item as stored, atomically, if `user` may still change
    it when the write lands; bumps `version` and `updated_at` and keeps the new version
    in the item's history. Each attempt is one transaction of the compare-and-swap and
    the history write (`atomically`); a reread after a lost race is `session`'s. Content
    equal to the item's is no change (no write), unless `even_unchanged` (a restore of a
    version is a new version whatever it restores)."""
    current: Item = item
    # Lost a race: back off a little (randomly, so racing writers spread out) first.
    racing = Retry(BACKOFF_S, BACKOFF_MAX_S, budget_s=RACE_BUDGET_S, full_jitter=True)
    async for attempt in racing:
        if attempt:  # changed meanwhile, or no longer shared for editing: 404, 403
            assert item.id is not None
            current = changeable(await find_readable(item.id, user, session))
        expected_version(if_match, current.version)  # 412 once the version it named is gone
        content = new_content(current)
        unchanged = identical(content.model_dump(), current.model_dump(include=CONTENT))
        if unchanged and not even_unchanged:
            return current  # nothing changes: no write, no new version
        written: list[dict[str, Any]] = []
        swap = _swap(current, user, stored_content(content), change, written)
        await atomically(swap)
        if written:
            stored = written[0]
            return shown(stored, policy.access(user, stored) or current.access or Access.owner)
    raise Conflict("The item is changing too fast to update; try again.")


def _swap(
    read: Item, user: User, content: dict[str, Any], change: Change, written: list[dict[str, Any]]
) -> history.Work:
    """One attempt: the item's new content, only if it is still at the version read and
    `user` may still change it, and its new version kept; `written` gets the item as
    written (nothing when the race was lost)."""

    async def swap(session: AsyncClientSession | None) -> None:
        stored = await Item.get_pymongo_collection().find_one_and_update(
            {"_id": read.id, "version": read.version, **policy.changeable_by(user, read.access)},
            # `$set`, not `$inc`: a version another tool stored as 5.0 becomes the integer 6.
            {"$set": {**content, "updated_at": _later(read), "version": read.version + 1}},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        written[:] = [] if stored is None else [stored]
        await history.record(written, change, session)

    return swap


async def delete_item(
    item: Item, user: User, if_match: str | None, session: AsyncClientSession | None = None
) -> None:
    expected = expected_version(if_match, item.version)
    condition = {} if expected is None else {"version": expected}
    result = await Item.get_pymongo_collection().delete_one(
        {"_id": item.id, **condition, **policy.manageable_by(user)}, session=session
    )
    if result.deleted_count == 0:
        assert item.id is not None
        manageable(await find_readable(item.id, user, session))  # 404 when gone
        if expected is not None:
            raise PreconditionFailed()
        raise NotFound("item")  # pragma: no cover - deleted between the two reads
    # Nothing keeps its content readable: its history and the answers kept for retries
    # that show it go too (in the same transaction, where the caller runs one).
    await history.forget([item.id], session)
    await queue.forget_item([item.id], session)
    await forget_answers_holding([item.id], session)


def _later(item: Item) -> datetime:
    # Never earlier than the last write, even if clocks of two hosts disagree.
    return max(utcnow(), item.updated_at)

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
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from api.core.errors import Conflict, NotFound
from api.core.retry import Retry
from api.items import policy
from api.items.conditional import PreconditionFailed, expected_version
from api.items.deps import changeable, find_readable, manageable, shown
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


async def insert_item(
    owner_id: PydanticObjectId, content: ItemCreate, session: AsyncClientSession | None = None
) -> Item:
    now = utcnow()
    doc = {**policy.new_item_of(owner_id), **stored_content(content)}
    doc |= {"created_at": now, "updated_at": now, "version": 1}
    result = await Item.get_pymongo_collection().insert_one(doc, session=session)
    return shown({**doc, "_id": result.inserted_id}, Access.owner)


async def insert_items(
    owner_id: PydanticObjectId, contents: list[ItemCreate], session: AsyncClientSession | None
) -> list[Item]:
    """Several new items in one round trip (in order), as insert_item makes one."""
    now = utcnow()
    docs = [
        {**policy.new_item_of(owner_id), **stored_content(content)}
        | {"created_at": now, "updated_at": now, "version": 1}
        for content in contents
    ]
    result = await Item.get_pymongo_collection().insert_many(docs, session=session)
    made = zip(docs, result.inserted_ids, strict=True)
    return [shown({**doc, "_id": new_id}, Access.owner) for doc, new_id in made]


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
    change: Callable[[Item], ItemCreate],
    if_match: str | None,
    session: AsyncClientSession | None = None,
) -> Item:
    """Apply `change` to the item as stored, atomically, if `user` may still change it
    when the write lands; bumps `version` and `updated_at`."""
    current: Item = item
    # Lost a race: back off a little (randomly, so racing writers spread out) first.
    racing = Retry(BACKOFF_S, BACKOFF_MAX_S, budget_s=RACE_BUDGET_S, full_jitter=True)
    async for attempt in racing:
        if attempt:  # changed meanwhile, or no longer shared for editing: 404, 403
            assert item.id is not None
            current = changeable(await find_readable(item.id, user, session))
        expected_version(if_match, current.version)  # 412 once the version it named is gone
        content = change(current)
        if identical(content.model_dump(), current.model_dump(include=CONTENT)):
            return current  # nothing changes: no write, no new version
        stored = await Item.get_pymongo_collection().find_one_and_update(
            {
                "_id": current.id,
                "version": current.version,
                **policy.changeable_by(user, current.access),
            },
            {
                "$set": {**stored_content(content), "updated_at": _later(current)},
                "$inc": {"version": 1},
            },
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if stored is not None:
            return shown(stored, policy.access(user, stored) or current.access or Access.owner)
    raise Conflict("The item is changing too fast to update; try again.")


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
    # Nothing keeps its content readable: the answers kept for retries that show it go
    # too (in the same transaction, where the caller runs one).
    await forget_answers_holding([item.id], session)


def _later(item: Item) -> datetime:
    # Never earlier than the last write, even if clocks of two hosts disagree.
    return max(utcnow(), item.updated_at)

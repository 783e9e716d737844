"""Dependencies that validate: the item a request names, if the caller may touch it."""

import logging
from typing import Annotated

from bson import ObjectId
from fastapi import Path, Request, Security
from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from api.accounts.deps import current_user
from api.core.errors import DomainError, Forbidden, NotFound
from api.core.services import get_services
from api.items import policy
from documents import Item, User
from documents.base import ObjectIdParam

log = logging.getLogger("docstore.items")
ItemId = Annotated[ObjectIdParam, Path(description="The item's 24-hex id")]


class Unreadable(DomainError):
    status, code, title = 409, "unreadable-item", "Unreadable item"
    detail = (
        "The stored document is not a valid item (another tool wrote it); it cannot be "
        "served until it is repaired in the database."
    )


async def find_readable(
    item_id: ObjectId, user: User, session: AsyncClientSession | None = None
) -> Item:
    """The item, if the access policy lets the caller read it."""
    try:
        # Read raw and validated once: Beanie's find_one adds a tenth to a by-id read.
        stored = await Item.get_pymongo_collection().find_one(
            policy.by_id(item_id, user), session=session
        )
        if stored is None:
            raise NotFound("item")  # someone else's item is a 404, not a 403
        item: Item = Item.model_validate(stored)
    except ValidationError:
        log.warning("item %s cannot be read: it is not a valid item", item_id)
        raise Unreadable() from None
    return item


async def find_writable(
    item_id: ObjectId, user: User, session: AsyncClientSession | None = None
) -> Item:
    """The item, if the access policy lets the caller change it (one it may only read
    is a 403)."""
    return _changeable(await find_readable(item_id, user, session), user)


def _changeable(item: Item, user: User) -> Item:
    if not policy.may_change(user, item):
        raise Forbidden("You may read this item but not change it.")
    return item


async def readable_item(
    item_id: ItemId, user: Annotated[User, Security(current_user)], request: Request
) -> Item:
    try:
        return await find_readable(item_id, user)
    except Unreadable:
        get_services(request).metrics.skipped("item")
        raise


async def writable_item(
    item_id: ItemId, user: Annotated[User, Security(current_user)], request: Request
) -> Item:
    return _changeable(await readable_item(item_id, user, request), user)


# The item, for a caller allowed to read it, or to change it (a personal access token
# needs the scope named).
ReadableItem = Annotated[Item, Security(readable_item, scopes=["items:read"])]
WritableItem = Annotated[Item, Security(writable_item, scopes=["items:write"])]

"""Dependencies that validate: the item a request names, if the caller may touch it."""

import logging
from typing import Annotated

from bson import ObjectId
from fastapi import Path, Request, Security
from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from api.accounts.deps import current_user
from api.core.errors import DomainError, NotFound
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


async def find_owned(
    item_id: ObjectId, user: User, session: AsyncClientSession | None = None
) -> Item:
    """The item, if the caller may touch it: their own (any, for a superuser)."""
    scope = {} if user.is_superuser else {"owner_id": user.id}
    try:
        # Read raw and validated once: Beanie's find_one adds a tenth to a by-id read.
        stored = await Item.get_pymongo_collection().find_one(
            {"_id": item_id, **scope}, session=session
        )
        if stored is None:
            raise NotFound("item")  # someone else's item is a 404, not a 403
        item: Item = Item.model_validate(stored)
    except ValidationError:
        log.warning("item %s cannot be read: it is not a valid item", item_id)
        raise Unreadable() from None
    return item


async def owned_item(
    item_id: ItemId, user: Annotated[User, Security(current_user)], request: Request
) -> Item:
    try:
        return await find_owned(item_id, user)
    except Unreadable:
        request.app.state.metrics.skipped("item")
        raise


# The item, for a caller allowed to read it, or to change it (a personal access token
# needs the scope named).
ReadableItem = Annotated[Item, Security(owned_item, scopes=["items:read"])]
WritableItem = Annotated[Item, Security(owned_item, scopes=["items:write"])]

"""Dependencies that validate: the item a request names, if the caller may touch it."""

import logging
from typing import Annotated

from fastapi import Depends, Path, Request
from pydantic import ValidationError

from api.accounts.deps import CurrentUser
from api.core.errors import DomainError, NotFound
from documents import Item
from documents.base import ObjectIdParam

log = logging.getLogger("docstore.items")
ItemId = Annotated[ObjectIdParam, Path(description="The item's 24-hex id")]


class Unreadable(DomainError):
    status, code, title = 409, "unreadable-item", "Unreadable item"
    detail = (
        "The stored document is not a valid item (another tool wrote it); it cannot be "
        "served until it is repaired in the database."
    )


async def owned_item(item_id: ItemId, user: CurrentUser, request: Request) -> Item:
    scope = {} if user.is_superuser else {"owner_id": user.id}
    try:
        item = await Item.find_one({"_id": item_id, **scope})
    except ValidationError:
        log.warning("item %s cannot be read: it is not a valid item", item_id)
        request.app.state.metrics.skipped("item")
        raise Unreadable() from None
    if item is None:
        raise NotFound("item")  # someone else's item is a 404, not a 403
    return item


OwnedItem = Annotated[Item, Depends(owned_item)]

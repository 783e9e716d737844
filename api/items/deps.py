"""Dependencies that validate: the item a request names, if the caller may touch it."""

from typing import Annotated

from fastapi import Depends, Path

from api.accounts.deps import CurrentUser
from api.core.errors import NotFound
from documents import Item
from documents.base import ObjectIdParam

ItemId = Annotated[ObjectIdParam, Path(description="The item's 24-hex id")]


async def owned_item(item_id: ItemId, user: CurrentUser) -> Item:
    scope = {} if user.is_superuser else {"owner_id": user.id}
    item = await Item.find_one({"_id": item_id, **scope})
    if item is None:
        raise NotFound("item")  # someone else's item is a 404, not a 403
    return item


OwnedItem = Annotated[Item, Depends(owned_item)]

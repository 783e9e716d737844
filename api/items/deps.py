"""Dependencies that validate: the item a request names, if the caller may touch it."""

import logging
from collections.abc import Mapping
from typing import Annotated, Any

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
from documents.share import Access

log = logging.getLogger("docstore.items")
ItemId = Annotated[ObjectIdParam, Path(description="The item's 24-hex id")]


class Unreadable(DomainError):
    status, code, title = 409, "unreadable-item", "Unreadable item"
    detail = (
        "The stored document is not a valid item (another tool wrote it); it cannot be "
        "served until it is repaired in the database."
    )


def shown(doc: Mapping[str, Any], access: Access) -> Item:
    """A stored item as `access` shows it (ValidationError when it is not a valid item).
    An `access` stored by another tool is never taken for the caller's."""
    item: Item = Item.model_validate({**doc, "access": None})
    item.access = access
    return item


async def find_readable(
    item_id: ObjectId, user: User, session: AsyncClientSession | None = None
) -> Item:
    """The item, if the access policy lets the caller read it."""
    # Read raw and validated once: Beanie's find_one adds a tenth to a by-id read.
    stored = await Item.get_pymongo_collection().find_one(policy.by_id(item_id), session=session)
    access = None if stored is None else policy.access(user, stored)
    if stored is None or access is None:
        raise NotFound("item")  # someone else's item is a 404, not a 403
    try:
        return shown(stored, access)
    except ValidationError:
        log.warning("item %s cannot be read: it is not a valid item", item_id)
        raise Unreadable() from None


async def find_writable(
    item_id: ObjectId, user: User, session: AsyncClientSession | None = None
) -> Item:
    """The item, if the access policy lets the caller change its content (one it may
    only read is a 403)."""
    return changeable(await find_readable(item_id, user, session))


async def find_manageable(
    item_id: ObjectId, user: User, session: AsyncClientSession | None = None
) -> Item:
    """The item, if the caller may delete it and decide who shares it (its owner or a
    superuser; a sharee gets a 403)."""
    return manageable(await find_readable(item_id, user, session))


def changeable(item: Item) -> Item:
    if not policy.may_change(item.access):
        raise Forbidden("You may read this item but not change it.")
    return item


def manageable(item: Item) -> Item:
    require_manager(item.access)
    return item


def require_manager(access: Access | None) -> None:
    if not policy.may_manage(access):
        raise Forbidden("Only the item's owner may delete it or change who it is shared with.")


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
    return changeable(await readable_item(item_id, user, request))


async def manageable_item(
    item_id: ItemId, user: Annotated[User, Security(current_user)], request: Request
) -> Item:
    return manageable(await readable_item(item_id, user, request))


# The item, for a caller allowed to read it, change it, or manage it (delete it, share
# it): a personal access token needs the scope named.
ReadableItem = Annotated[Item, Security(readable_item, scopes=["items:read"])]
WritableItem = Annotated[Item, Security(writable_item, scopes=["items:write"])]
SharedItem = Annotated[Item, Security(manageable_item, scopes=["items:share"])]

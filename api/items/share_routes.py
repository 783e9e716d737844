"""`/items/{id}/shares`: who else may read or edit an item.

The owner (or a superuser) shares an item with a user, by id, username or email, as a
viewer or an editor, changes the role, and ends a share; a sharee may end their own
(leave). Anyone who may read the item sees its shares. Someone it is not shared with
gets a 404 on every one of these, as on the item itself.
"""

from typing import Annotated, Any

from bson import ObjectId
from fastapi import APIRouter, Path, Response, Security
from pydantic import ValidationError

from api.accounts.auth import find_by_login
from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import current_user
from api.core.errors import NotFound, problem_responses
from api.core.pagination import Page
from api.core.services import AppServices
from api.items.deps import ItemId, ReadableItem, SharedItem
from api.items.sharing import StoredShare, change_shares, shares_of, sharing, unsharing
from documents import Item, User
from documents.base import ObjectIdParam
from documents.share import Share, ShareRequest

router = APIRouter(prefix="/items", tags=["sharing"], route_class=AuthFirstRoute)
Sharer = Annotated[User, Security(current_user, scopes=["items:share"])]


@router.post(
    "/{item_id}/shares",
    status_code=201,
    response_model=Share,
    responses={
        **problem_responses(401, 403, 404, 409),
        200: {"model": Share, "description": "That user had a share already: its role is set"},
    },
)
async def share_item(
    item: SharedItem, body: ShareRequest, user: Sharer, services: AppServices, response: Response
) -> Share:
    """Share the item with a user (their id, username or email) as a `viewer` or an
    `editor`: its owner or a superuser (a sharee gets a 403). 201 with the new share;
    200 when that user had one (its role is now this). An unknown or inactive user is a
    404, the owner a 422, a share past SHARES_MAX_PER_ITEM a 409."""
    assert item.id is not None
    target = await _sharee(body.user)
    most = services.settings.shares_max_per_item
    change = sharing(target, body.role, most, item.owner_id)
    before, after = await change_shares(item.id, user, change)
    if any(share.user_id == target.id for share in before):
        response.status_code = 200
    [share] = [share for share in after if share.user_id == target.id]
    return _shown(share, {target.id: target.username})


@router.get(
    "/{item_id}/shares", response_model=Page[Share], responses=problem_responses(401, 404, 409)
)
async def list_shares(item: ReadableItem) -> Page[Share]:
    """The item's shares, for anyone who may read it, in the order they were made
    (all of them: at most SHARES_MAX_PER_ITEM)."""
    stored = await Item.get_pymongo_collection().find_one(
        {"_id": item.id}, projection={"owner_id": 1, "readers": 1, "shares": 1}
    )
    shares = shares_of(stored or {})
    ids = [share.user_id for share in shares]
    names = {
        user["_id"]: user.get("username")
        async for user in User.get_pymongo_collection().find(
            {"_id": {"$in": ids}}, projection={"username": 1}
        )
    }
    return Page[Share](items=[_shown(share, names) for share in shares], next_cursor=None)


@router.delete(
    "/{item_id}/shares/{user_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409),
)
async def unshare_item(
    item_id: ItemId,
    user_id: Annotated[ObjectIdParam, Path(description="The sharee's 24-hex id")],
    user: Sharer,
) -> None:
    """End a share: the owner (or a superuser) ends anyone's, a sharee their own (leaves
    the item). Any other sharee gets a 403; no share for that user, a 404."""
    await change_shares(item_id, user, unsharing(user_id, user))


async def _sharee(text: str) -> User:
    """The active user `text` names: by id, else by email or username."""
    try:
        found = await User.find_one({"_id": ObjectId(text)}) if ObjectId.is_valid(text) else None
        if found is None:
            found = await find_by_login(text)
    except ValidationError:  # an account another tool mangled: nobody to share with
        found = None
    if found is None or not found.is_active:
        raise NotFound("user")
    return found


def _shown(share: StoredShare, names: dict[Any, Any]) -> Share:
    name = names.get(share.user_id)
    return Share(
        user_id=share.user_id,
        username=name if isinstance(name, str) else None,
        role=share.role,
        created_at=share.created_at,
        updated_at=share.updated_at,
    )

"""Dependencies that validate: who is calling, and what they may touch."""

from typing import Annotated

from bson import ObjectId
from bson.errors import InvalidId
from fastapi import Depends, Path
from fastapi.security import OAuth2PasswordBearer

from api.errors import Forbidden, NotAuthenticated, NotFound
from api.routes import API_PREFIX
from api.security import InvalidToken
from api.services import AppServices
from documents import Item, User
from documents.base import ObjectIdParam

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=f"{API_PREFIX}/auth/login", auto_error=False)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


async def optional_user(token: BearerToken, services: AppServices) -> User | None:
    """The caller when a token is sent; a bad token is still a 401, never anonymous."""
    if not token:
        return None
    try:
        claims = services.signer.verify(token)
        user_id = ObjectId(claims.user_id)
    except (InvalidToken, InvalidId, TypeError):
        raise NotAuthenticated("The access token is invalid or expired.") from None
    user = await User.find_one({"_id": user_id})
    if user is None or not user.is_active or user.token_version != claims.token_version:
        raise NotAuthenticated("The access token is no longer valid.")
    return user


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise NotAuthenticated()
    return user


async def superuser(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_superuser:
        raise Forbidden("Only superusers may do this.")
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(current_user)]
SuperUser = Annotated[User, Depends(superuser)]

ItemId = Annotated[ObjectIdParam, Path(description="The item's 24-hex id")]
UserId = Annotated[ObjectIdParam, Path(description="The user's 24-hex id")]


async def owned_item(item_id: ItemId, user: CurrentUser) -> Item:
    scope = {} if user.is_superuser else {"owner_id": user.id}
    item = await Item.find_one({"_id": item_id, **scope})
    if item is None:
        raise NotFound("item")  # someone else's item is a 404, not a 403
    return item


async def target_user(user_id: UserId, user: CurrentUser) -> User:
    """Yourself, or anyone for a superuser; asking for another account is 403 either way."""
    if user_id == user.id:
        return user
    if not user.is_superuser:
        raise Forbidden("You may only see and change your own account.")
    target = await User.find_one({"_id": user_id})
    if target is None:
        raise NotFound("user")
    return target


OwnedItem = Annotated[Item, Depends(owned_item)]
TargetUser = Annotated[User, Depends(target_user)]

"""Items: each user's JSON documents, scoped to their owner (superusers see all)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pymongo import DESCENDING, ReturnDocument

from api.deps import CurrentUser, OwnedItem
from api.errors import Forbidden, NotFound, problem_responses
from api.pagination import Page, PageQuery, fetch_page
from api.routes import API_PREFIX
from api.services import AppServices
from documents import Item, ItemCreate, ItemPatch
from documents.base import ObjectIdParam, utcnow

router = APIRouter(prefix="/items", tags=["items"])

NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


@router.post("", status_code=201, responses=problem_responses(401))
async def create_item(body: ItemCreate, user: CurrentUser, response: Response) -> Item:
    now = utcnow()
    item = Item(owner_id=user.id, created_at=now, updated_at=now, **body.model_dump())
    await item.insert()
    response.headers["Location"] = f"{API_PREFIX}{router.prefix}/{item.id}"
    return item


@router.get("", responses=problem_responses(401, 403))
async def list_items(
    user: CurrentUser,
    page: PageQuery,
    services: AppServices,
    owner_id: Annotated[
        ObjectIdParam | None, Query(description="Superusers: only this owner's items")
    ] = None,
) -> Page[Item]:
    """Your items, newest first (superusers: everyone's)."""
    query: dict[str, Any] = {"owner_id": user.id}
    if user.is_superuser:
        query = {"owner_id": owner_id} if owner_id else {}
    elif owner_id not in (None, user.id):
        raise Forbidden("Only superusers may list other users' items.")
    rows, next_cursor, total = await fetch_page(Item, query, NEWEST_FIRST, page, services.cursors)
    return Page[Item](items=rows, next_cursor=next_cursor, total=total)


@router.get("/{item_id}", responses=problem_responses(401, 404))
async def read_item(item: OwnedItem) -> Item:
    return item


@router.patch("/{item_id}", responses=problem_responses(401, 404))
async def update_item(body: ItemPatch, item: OwnedItem) -> Item:
    """Change the fields sent; bumps `version` and `updated_at` in one atomic write."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return item
    stored = await Item.get_pymongo_collection().find_one_and_update(
        {"_id": item.id},
        {"$set": {**changes, "updated_at": utcnow()}, "$inc": {"version": 1}},
        return_document=ReturnDocument.AFTER,
    )
    if stored is None:
        raise NotFound("item")
    updated: Item = Item.model_validate(stored)
    return updated


@router.delete("/{item_id}", status_code=204, responses=problem_responses(401, 404))
async def delete_item(item: OwnedItem) -> None:
    await Item.get_pymongo_collection().delete_one({"_id": item.id})

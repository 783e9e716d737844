"""Items: each user's JSON documents, scoped to their owner (superusers see all)."""

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BeforeValidator, ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import ItemReader, ItemWriter
from api.config import API_PREFIX
from api.core.errors import DomainError, NotFound, problem_responses
from api.core.pagination import Page, PageQuery, fetch_page
from api.core.services import AppServices
from api.items import policy
from api.items.conditional import IfMatch, IfNoneMatch, etag, matches
from api.items.deps import ItemId, ReadableItem, WritableItem, find_manageable
from api.items.history import Change
from api.items.idempotency import Answer, IdempotencyKey, documented, once
from api.items.query import (
    FIELDS_PATTERN,
    RFC3339_PATTERN,
    InvalidQuery,
    Sort,
    compile_where,
    parse_fields,
    parse_rfc3339,
    parse_sort,
)
from api.items.trash import move_to_trash, purge_trashed
from api.items.writes import delete_item, insert_items, item_json, patched, write_content
from documents import Item, ItemCreate, ItemFields, ItemMergePatch
from documents.base import ObjectIdParam
from documents.item import tag_key
from documents.search import search_filter

log = logging.getLogger("docstore.items")
router = APIRouter(prefix="/items", tags=["items"], route_class=AuthFirstRoute)

MERGE_PATCH = {
    "requestBody": {
        "content": {
            "application/merge-patch+json": {
                "schema": {"$ref": "#/components/schemas/ItemMergePatch"}
            }
        }
    }
}


ETAG = {"ETag": {"description": "The item's version", "schema": {"type": "string"}}}
LOCATION = {"Location": {"description": "The new item's URL", "schema": {"type": "string"}}}
CREATED: dict[int | str, dict[str, Any]] = {201: {"headers": {**LOCATION, **ETAG}}}
VERSIONED: dict[int | str, dict[str, Any]] = {200: {"headers": ETAG}}


@router.post(
    "",
    status_code=201,
    response_model=Item,
    responses=documented({**problem_responses(401, 403, 409), **CREATED}, 201),
)
async def create_item(
    body: ItemCreate,
    user: ItemWriter,
    request: Request,
    services: AppServices,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create an item (`Location` and `ETag` name it). With an Idempotency-Key, a retry
    of the same request replays this answer instead of creating another."""
    owner_id = user.id
    assert owner_id is not None
    change = Change("created", user.id, services.settings.history_max_versions)

    async def perform(session: AsyncClientSession | None) -> Answer:
        [item] = await insert_items(owner_id, [body], change, session)
        headers = {"Location": f"{API_PREFIX}{router.prefix}/{item.id}", "ETag": etag(item.version)}
        return Answer.holding(201, item_json(item), [item], headers)

    # The item and its first version: one transaction.
    return await once(services, request, user, idempotency_key, perform, atomic=True)


def _rfc3339(value: object) -> object:
    """A query's date-time as the schema's `format: date-time` means it (RFC 3339, with
    its offset), not whatever Pydantic would read as one."""
    return parse_rfc3339(value) if isinstance(value, str) else value


QueryTime = Annotated[
    datetime | None,
    BeforeValidator(_rfc3339),
    Query(json_schema_extra={"pattern": RFC3339_PATTERN}),
]


# What a list never shows, so never reads: the search words (up to 400 an item).
UNSHOWN = {"search_terms": 0}
# What a list reads whatever `fields` asks for: what the caller's access is decided by.
ACCESS_FIELDS = {"owner_id": 1, "readers": 1, "shares": 1}
Relation = Literal["owner", "editor", "viewer"]


@router.get("", response_model_exclude_unset=True, responses=problem_responses(401, 403))
async def list_items(
    request: Request,
    user: ItemReader,
    page: PageQuery,
    services: AppServices,
    where: Annotated[str | None, Query(description="MongoDB-style filter (JSON)")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description=(
                "Words to find: an item matches when each is the start of one of its words "
                "(a q without letters or digits narrows nothing)"
            ),
        ),
    ] = None,
    tag: Annotated[list[str] | None, Query(description="Items with all these tags")] = None,
    created_after: QueryTime = None,
    created_before: QueryTime = None,
    sort: Annotated[Sort, Query(description="A field to order by; `-` descends")] = ("-created_at"),
    fields: Annotated[
        str | None,
        Query(
            description="Comma-separated fields to return (`id` always comes along)",
            json_schema_extra={"pattern": FIELDS_PATTERN},
        ),
    ] = None,
    owner_id: Annotated[
        ObjectIdParam | None, Query(description="Superusers: only this owner's items")
    ] = None,
    access: Annotated[
        list[Relation] | None,
        Query(description="Only items where you are one of these (repeatable)"),
    ] = None,
) -> Page[ItemFields]:
    """Every item you can read, your own and those shared with you (superusers:
    everyone's), filtered, sorted and paged by cursor."""
    scope = policy.readable(user, owner_id, doing="list")
    try:
        filters = _filters(where, q, tag, created_after, created_before)
        order = parse_sort(sort)
        projection = parse_fields(fields) if fields is not None else None
    except InvalidQuery as error:
        raise BadQuery(str(error)) from None
    if access:
        assert user.id is not None
        filters.append(policy.with_access(user.id, list(access)))
    # The scope is ANDed last and outside the client's filter: no filter can widen it.
    query = {"$and": [*filters, scope.filter]} if filters else scope.filter
    shows_access = projection is None or "access" in projection
    shown = set(projection or ())  # with `fields`: what it names
    if projection is not None:
        projection.pop("access", None)
        if shows_access:
            projection |= ACCESS_FIELDS
    collection = Item.get_pymongo_collection()
    rows, next_cursor, total = await fetch_page(
        collection,
        query,
        order,
        page,
        services.cursors,
        UNSHOWN if projection is None else projection,
    )
    items = []
    for row in rows:
        relation = scope.access(policy.Acl.of(row)) if shows_access else None
        if projection is not None:
            row = {k: v for k, v in row.items() if k in shown or k == "_id"}
        row.pop("access", None)  # never one stored by another tool
        try:
            item = ItemFields.model_validate(row)
        except ValidationError:  # written by another tool: skipped, not the whole page
            log.warning("list skipped item %r it cannot show", row.get("_id"))
            services.metrics.skipped("list")
            continue
        if shows_access:
            item.access = relation
        items.append(item)
    return Page[ItemFields](items=items, next_cursor=next_cursor, total=total)


def _filters(
    where: str | None,
    q: str | None,
    tags: list[str] | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> list[dict[str, Any]]:
    filters = [compile_where(where)] if where is not None else []
    if q is not None and (search := search_filter(q)) is not None:
        filters.append(search)
    if tags:
        filters.append({"tags": {"$all": [tag_key(tag) for tag in tags]}})
    for bound, op in ((created_after, "$gt"), (created_before, "$lt")):
        if bound is not None:
            filters.append({"created_at": {op: bound}})
    return filters


class BadQuery(DomainError):
    status, code, title = 422, "invalid-query", "Invalid query"


@router.get(
    "/{item_id}",
    response_model=Item,
    responses={
        **problem_responses(401, 404, 409),
        **VERSIONED,
        304: {"description": "Not modified (If-None-Match)", "headers": ETAG},
    },
)
async def read_item(item: ReadableItem, if_none_match: IfNoneMatch = None) -> Any:
    """The item, for its owner and anyone it is shared with (`access` says which)."""
    headers = {"ETag": etag(item.version)}
    if if_none_match and matches(if_none_match, item.version):
        return Response(status_code=304, headers=headers)
    # Serialised here, once: the item was validated as it was read, and FastAPI would
    # validate it again against the response model before serialising it.
    return Response(item_json(item), headers=headers, media_type="application/json")


@router.patch(
    "/{item_id}",
    response_model=Item,
    responses={**problem_responses(401, 403, 404, 409, 412), **VERSIONED},
    openapi_extra=MERGE_PATCH,
)
async def update_item(
    patch: Annotated[ItemMergePatch, Body()],
    item: WritableItem,
    user: ItemWriter,
    response: Response,
    services: AppServices,
    if_match: IfMatch = None,
) -> Item:
    """JSON Merge Patch (`application/merge-patch+json` or `application/json`): the
    owner, an editor or a superuser (a viewer gets a 403)."""
    change = Change("updated", user.id, services.settings.history_max_versions)
    updated = await write_content(
        item, user, lambda current: patched(current, patch), if_match, change, services.atomically
    )
    response.headers["ETag"] = etag(updated.version)
    return updated


@router.put("/{item_id}", responses={**problem_responses(401, 403, 404, 409, 412), **VERSIONED})
async def replace_item(
    body: ItemCreate,
    item: WritableItem,
    user: ItemWriter,
    response: Response,
    services: AppServices,
    if_match: IfMatch = None,
) -> Item:
    """Replace the content; the id, owner, shares and created_at stay. The owner, an
    editor or a superuser (a viewer gets a 403)."""
    change = Change("replaced", user.id, services.settings.history_max_versions)
    updated = await write_content(item, user, lambda _: body, if_match, change, services.atomically)
    response.headers["ETag"] = etag(updated.version)
    return updated


@router.delete("/{item_id}", status_code=204, responses=problem_responses(401, 403, 404, 409, 412))
async def remove_item(
    item_id: ItemId,
    user: ItemWriter,
    services: AppServices,
    if_match: IfMatch = None,
    permanent: Annotated[
        bool,
        Query(description="Delete for good, from the trash or not, instead of moving it there"),
    ] = False,
) -> None:
    """Move an item to its owner's trash (`GET /items/trash`; restore it with `POST
    /items/{id}/restore`), or with `permanent=true` delete it for good: its owner or a
    superuser (a sharee gets a 403). Its sharees see it go either way; a permanent
    delete takes the answers kept for retries that show it along, at once."""
    keep = timedelta(days=services.settings.trash_retention_days)

    async def remove(session: AsyncClientSession | None) -> None:
        if not permanent:
            item = await find_manageable(item_id, user, session)
            await move_to_trash(item, user, if_match, keep, session)
            return
        # For good, from wherever it is: the trash, the items, or (a crash on a
        # standalone server left it there) both.
        purged = await purge_trashed(item_id, user, if_match, session)
        try:
            item = await find_manageable(item_id, user, session)
        except NotFound:
            if purged:
                return
            raise
        await delete_item(item, user, if_match, session)

    await services.atomically(remove)

"""`/items/{id}/versions`: an item's history, one version of it, and restoring one.

Its owner and editors (and superusers) see and restore history; a viewer gets a 403,
anyone else a 404, as on the item itself. Restoring a version is a change like any
other: a compare-and-swap (`If-Match` honoured) that is itself kept as a new version.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Response, Security
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import ItemWriter
from api.core.errors import DomainError, NotFound, problem_responses
from api.core.pagination import Page, PageQuery, fetch_page, showable
from api.core.services import AppServices, Services
from api.items.conditional import IfMatch, etag
from api.items.deps import writable_item
from api.items.history import Change, kept, version_id
from api.items.writes import validated, write_content
from documents import Item, ItemAsItWas, ItemVersion, VersionSummary

router = APIRouter(prefix="/items", tags=["history"], route_class=AuthFirstRoute)
NEWEST_FIRST = [("version", -1), ("_id", -1)]  # the (item_id, version) index
VersionNumber = Annotated[int, Path(ge=1, le=2**53, description="A version the item had")]


class UnreadableVersion(DomainError):
    status, code, title = 409, "unreadable-version", "Unreadable version"
    detail = (
        "This version's stored document is not a valid item (another tool wrote it); it "
        "cannot be shown or restored until it is repaired in the database."
    )


# Those who may change the item (a viewer gets the 403 of a write), with the scope named.
HistoryItem = Annotated[Item, Security(writable_item, scopes=["items:read"])]
RestorableItem = Annotated[Item, Security(writable_item, scopes=["items:write"])]


@router.get("/{item_id}/versions", responses=problem_responses(401, 403, 404, 409))
async def list_versions(
    item: HistoryItem, page: PageQuery, services: AppServices
) -> Page[VersionSummary]:
    """The item's history, newest first: each change's version, when, by whom (null: an
    admin script) and what kind. The newest HISTORY_MAX_VERSIONS (100) are kept."""
    keep = services.settings.history_max_versions
    query = kept(item, keep)
    rows, next_cursor, total = await fetch_page(
        ItemVersion.get_pymongo_collection(),
        query,
        NEWEST_FIRST,
        page,
        services.cursors,
        {"version": 1, "changed_at": 1, "changed_by": 1, "change": 1},
    )
    shown = showable(rows, VersionSummary, lambda _: services.metrics.skipped("version"))
    return Page[VersionSummary](items=shown, next_cursor=next_cursor, total=total)


async def _version(item: Item, version: int, services: Services) -> ItemAsItWas:
    keep = services.settings.history_max_versions
    if not item.version - keep < version <= item.version:
        raise NotFound("version")  # never, or no longer kept
    stored = await ItemVersion.get_pymongo_collection().find_one(
        {**kept(item, keep), "_id": version_id(item.id, version), "version": version}
    )
    if stored is None:
        raise NotFound("version")
    try:
        as_it_was = ItemAsItWas.model_validate(
            {**stored, "updated_at": stored.get("changed_at"), "access": item.access}
        )
        as_it_was.model_dump_json()
    except (ValidationError, PydanticSerializationError):
        services.metrics.skipped("version")
        raise UnreadableVersion() from None
    return as_it_was


@router.get("/{item_id}/versions/{version}", responses=problem_responses(401, 403, 404, 409))
async def read_version(
    item: HistoryItem, version: VersionNumber, services: AppServices
) -> ItemAsItWas:
    """The item as it was at this version: its content then, and who changed it when."""
    return await _version(item, version, services)


@router.post(
    "/{item_id}/versions/{version}/restore",
    responses={
        **problem_responses(401, 403, 404, 409, 412),
        200: {"headers": {"ETag": {"description": "The item's new version"}}},
    },
)
async def restore_version(
    item: RestorableItem,
    version: VersionNumber,
    user: ItemWriter,
    services: AppServices,
    response: Response,
    if_match: IfMatch = None,
) -> Item:
    """Make the item's title, description, tags and data this version's again, as a new
    version (`change: restored`); its shares stay as they are. The owner, an editor or a
    superuser."""
    old = await _version(item, version, services)
    try:
        content = validated(old.model_dump(include={"title", "description", "tags", "data"}))
    except RequestValidationError:  # no longer a valid item (another tool wrote it)
        raise UnreadableVersion() from None
    change = Change("restored", user.id, services.settings.history_max_versions)
    restored = await write_content(
        item, user, lambda _: content, if_match, change, services.atomically, even_unchanged=True
    )
    response.headers["ETag"] = etag(restored.version)
    return restored

"""An item's history: the item as each change left it, newest `HISTORY_MAX_VERSIONS` kept."""

from datetime import datetime
from typing import Literal

from beanie import PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import DESCENDING, IndexModel

from documents.base import ApiDocument
from documents.item import ACCESS_DESCRIPTION, ItemShown
from documents.share import Access

ChangeKind = Literal["created", "updated", "replaced", "restored"]
CHANGED_BY = "The user who made the change; null for an admin script"


class ItemVersion(ApiDocument):
    """A full snapshot of an item's content at one version, `_id` `"<item id>:<version>"`.
    Reads show the newest HISTORY_MAX_VERSIONS of the item's current version; every
    tenth change deletes the older ones (api/items/history.py)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, alias="_id")  # type: ignore[assignment]
    item_id: PydanticObjectId
    owner_id: PydanticObjectId
    version: int
    changed_at: datetime
    changed_by: PydanticObjectId | None = None
    change: ChangeKind

    class Settings:
        name = "versions"
        indexes = [  # noqa: RUF012
            IndexModel([("item_id", 1), ("version", DESCENDING)]),  # an item's, newest first
            IndexModel("owner_id"),  # a deleted account's go with it
            # Set while the item is in the trash: its history is purged with it.
            IndexModel("purge_at", expireAfterSeconds=0),
        ]


class VersionSummary(BaseModel):
    """One change in an item's history."""

    version: int
    changed_at: datetime
    changed_by: PydanticObjectId | None = Field(description=CHANGED_BY)
    change: ChangeKind


class ItemAsItWas(ItemShown):
    """The item as it was at one version (its content then; `access` is yours now)."""

    access: Access | None = Field(default=None, description=ACCESS_DESCRIPTION)
    changed_at: datetime
    changed_by: PydanticObjectId | None = Field(description=CHANGED_BY)
    change: ChangeKind

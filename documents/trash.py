"""The trash: deleted items, kept as they were until restored or purged."""

from datetime import datetime

from beanie import PydanticObjectId
from pydantic import ConfigDict, Field
from pymongo import DESCENDING, IndexModel

from documents.base import ApiDocument
from documents.item import ItemShown


class TrashedItem(ApiDocument):
    """An item in its owner's trash: the item's document as it was when deleted (its
    content, shares and readers included), plus when, by whom, and when the TTL index
    purges it. Only the write paths read the rest."""

    model_config = ConfigDict(extra="allow")

    owner_id: PydanticObjectId
    deleted_at: datetime
    purge_at: datetime

    class Settings:
        name = "trash"
        indexes = [  # noqa: RUF012
            IndexModel([("owner_id", 1), ("deleted_at", DESCENDING), ("_id", DESCENDING)]),
            IndexModel("purge_at", expireAfterSeconds=0),
            IndexModel("readers"),  # a deleted account is taken off the shares in here too
        ]


class TrashedItemPublic(ItemShown):
    """An item in your trash: as it was, and when it goes for good."""

    deleted_at: datetime
    purge_at: datetime = Field(description="When it is removed for good (TRASH_RETENTION_DAYS)")

"""The trash: deleted items, kept as they were until restored or purged."""

from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import DESCENDING, IndexModel

from documents.base import ApiDocument


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


class TrashedItemPublic(BaseModel):
    """An item in your trash: as it was, and when it goes for good."""

    id: PydanticObjectId = Field(validation_alias="_id", serialization_alias="id")
    owner_id: PydanticObjectId
    title: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int
    deleted_at: datetime
    purge_at: datetime = Field(description="When it is removed for good (TRASH_RETENTION_DAYS)")

"""The documents users keep: the stored `Item` and what clients send to make or change one."""

from datetime import datetime
from typing import Annotated, Any, Self

from beanie import PydanticObjectId
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pymongo import DESCENDING, IndexModel

from documents.base import ApiDocument, reject_nulls
from documents.free_json import JsonObject

MAX_TAGS = 20

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


def normalise_tags(tags: list[str]) -> list[str]:
    unique = list(dict.fromkeys(tag.lower() for tag in tags))
    if len(unique) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} distinct tags")
    return unique


Tags = Annotated[list[Tag], Field(max_length=200), AfterValidator(normalise_tags)]


class Item(ApiDocument):
    owner_id: PydanticObjectId
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    tags: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int = 1

    class Settings:
        name = "items"
        indexes = [  # noqa: RUF012
            IndexModel([("owner_id", 1), ("created_at", DESCENDING), ("_id", DESCENDING)]),
            IndexModel([("owner_id", 1), ("updated_at", DESCENDING)]),
            IndexModel([("owner_id", 1), ("tags", 1)]),
            # Superusers list everyone's items newest first.
            IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
        ]


class ItemCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Trip to Lisbon",
                    "description": "Bookings and packing list",
                    "tags": ["travel", "2026"],
                    "data": {"days": 4, "flights": [{"from": "BER", "to": "LIS"}]},
                }
            ]
        },
    )

    title: Title
    description: Description | None = None
    tags: Tags = []
    data: JsonObject = {}


class ItemPatch(BaseModel):
    """A partial update: only the fields sent change; `data` is replaced whole."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"title": "Trip to Porto", "tags": ["travel"]}]},
    )

    title: Title | None = None
    description: Description | None = None
    tags: Tags | None = None
    data: JsonObject | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        reject_nulls(self, ("title", "tags", "data"))
        return self

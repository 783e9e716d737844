"""The documents users keep: the stored `Item` and what clients send to make or change one."""

from datetime import datetime
from typing import Annotated, Any, Self

from beanie import PydanticObjectId
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pymongo import DESCENDING, IndexModel

from documents.base import ECMA_WHITESPACE, NOT_NULL, ApiDocument, reject_nulls
from documents.free_json import JsonObject, PatchObject
from documents.share import Access

MAX_TAGS = 20


def _trimmed(text: str) -> str:
    trimmed = text.strip(ECMA_WHITESPACE)
    if not trimmed:
        raise ValueError("must not be blank")
    return trimmed


# Its length as sent, then trimmed and not blank: as the schema says it (`\S`: not only
# whitespace), so a string valid by the schema is accepted and no other is.
NOT_BLANK = {"pattern": r"\S"}
Title = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra=NOT_BLANK, description="Not blank"),
    AfterValidator(_trimmed),
]
Description = Annotated[str, StringConstraints(max_length=5000)]
Tag = Annotated[
    str, Field(min_length=1, max_length=50, json_schema_extra=NOT_BLANK), AfterValidator(_trimmed)
]


def tag_key(tag: str) -> str:
    """A tag as stored and matched: trimmed, lower case."""
    return tag.strip(ECMA_WHITESPACE).lower()


def normalise_tags(tags: list[str]) -> list[str]:
    unique = list(dict.fromkeys(tag_key(tag) for tag in tags))
    if len(unique) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} distinct tags")
    return unique


# At most MAX_TAGS distinct ones (trimmed, lower-cased), which no keyword can state: the
# description says it; `maxItems` bounds the list as sent.
Tags = Annotated[
    list[Tag],
    Field(max_length=200, description=f"At most {MAX_TAGS} distinct, once trimmed and lower-cased"),
    AfterValidator(normalise_tags),
]


ACCESS_DESCRIPTION = (
    "Your relation to the item: `owner`, `editor` or `viewer` (shared with you), or "
    "`admin` (a superuser's view of someone else's)"
)


class Item(ApiDocument):
    """A stored item. Its documents also hold `search_terms` (see documents.search) and
    `readers` and `shares` (see documents.share), which only the write paths touch: they
    are not fields, so they are never shown or validated as part of an item. `access`
    is never stored: it is the caller's, set as the item is shown (api/items/policy)."""

    owner_id: PydanticObjectId
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    tags: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int = 1
    access: Access | None = Field(default=None, description=ACCESS_DESCRIPTION)

    class Settings:
        name = "items"
        # One per list order (a reader's: their own and shared items; an owner's and
        # everyone's, for superusers), ending in _id like the keyset cursor; plus tags and
        # search terms for an owner's filters. (`readers` cannot join `tags` in one index:
        # MongoDB indexes no two arrays of one document together.)
        indexes = [  # noqa: RUF012
            *(
                IndexModel([*scope, (field, DESCENDING), ("_id", DESCENDING)])
                for scope in ([("readers", 1)], [("owner_id", 1)], [])
                for field in ("created_at", "updated_at", "title")
            ),
            IndexModel([("owner_id", 1), ("tags", 1)]),
            IndexModel([("owner_id", 1), ("search_terms", 1)]),
        ]


class ItemCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # as the schema says: 0 is not false, "1" is not 1
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


READ_ONLY = ("id", "owner_id", "created_at", "updated_at", "version", "access")


class ItemMergePatch(BaseModel):
    """A JSON Merge Patch (RFC 7396): keys left out stay; `null` removes (a `data` key, the
    description; tags become empty); objects in `data` merge key by key. The result must
    be a valid item."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # as the schema says: 0 is not false, "1" is not 1
        json_schema_extra={
            "examples": [{"title": "Trip to Porto", "data": {"days": 5, "flights": None}}]
        },
    )

    title: Title | SkipJsonSchema[None] = NOT_NULL  # an item always has a title
    description: Description | None = None
    tags: Tags | None = None
    data: PatchObject | None = None

    @model_validator(mode="after")
    def _no_null_title(self) -> Self:
        reject_nulls(self, ("title",))  # refused as sent, before any If-Match is weighed
        return self

    @model_validator(mode="before")
    @classmethod
    def _read_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in READ_ONLY:
                if name in value:
                    raise ValueError(f"{name} is read-only")
        return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2, as written."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ItemShown(BaseModel):
    """A stored item's fields as a response shows them: what a trashed item and a past
    version show besides their own."""

    # A version's `_id` is its own: its item's is `item_id`.
    id: PydanticObjectId = Field(
        validation_alias=AliasChoices("item_id", "_id"), serialization_alias="id"
    )
    owner_id: PydanticObjectId
    title: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int


class ItemFields(BaseModel):
    """An item in a list: every field, or only those named by `fields` (and always `id`)."""

    id: PydanticObjectId = Field(validation_alias=AliasChoices("id", "_id"))
    owner_id: PydanticObjectId | None = None
    title: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    data: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int | None = None
    access: Access | None = Field(default=None, description=ACCESS_DESCRIPTION)

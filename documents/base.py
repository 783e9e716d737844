"""What every stored document shares: the `id` the API shows and aware UTC times."""

from datetime import UTC, datetime
from typing import Annotated, Any

from beanie import Document, PydanticObjectId
from bson import ObjectId
from pydantic import BaseModel, BeforeValidator, Field


def utcnow() -> datetime:
    # MongoDB keeps milliseconds; truncate so what we return equals what we stored.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# Whitespace as JSON Schema's patterns (ECMA-262) know it, so that "blank" means the same
# to the schema's `\S` and to us: Python's str.strip() also takes \x1c-\x1f and \x85.
ECMA_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


class ApiDocument(Document):
    """Stored as `_id`, shown to clients as `id` (decided once, here, for every model)."""

    id: PydanticObjectId | None = Field(
        default=None, alias="_id", serialization_alias="id", description="24-hex ObjectId"
    )


def _object_id(value: object) -> object:
    if isinstance(value, str) and not ObjectId.is_valid(value):
        raise ValueError("must be a 24-character hexadecimal id")
    return value


# An id from a client (path or query): a clear message when it is not an ObjectId.
ObjectIdParam = Annotated[PydanticObjectId, BeforeValidator(_object_id)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# For a field a partial update may leave out but not set to null: its schema shows the
# type alone (no `null`, no `"default": null`), as `reject_nulls` enforces.
NOT_NULL = Field(default=None, json_schema_extra=_no_default)


def reject_nulls(model: BaseModel, names: tuple[str, ...]) -> None:
    """In a partial update, these fields may be left out but not set to null."""
    for name in names:
        if name in model.model_fields_set and getattr(model, name) is None:
            raise ValueError(f"{name} cannot be null")

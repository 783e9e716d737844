"""Sharing: who else may read or edit an item, and in which role.

Shares live on the item itself (`shares`: user id, role, times), beside `readers`: the
owner and every sharee's id, which lists and the live feed match on. Both change
together in one single-document write, so they never disagree (api/items/sharing.py).
Neither is an `Item` field: they are never shown as part of an item, and one another
tool mangled cannot make the item unreadable to its owner.
"""

from datetime import datetime
from enum import StrEnum

from beanie import PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    viewer = "viewer"  # read, list, watch
    editor = "editor"  # also change the content (PATCH, PUT, batch patch and replace)


class Access(StrEnum):
    """The caller's relation to an item, as every item response shows it."""

    owner = "owner"
    editor = "editor"
    viewer = "viewer"
    admin = "admin"  # a superuser reading someone else's item


class ShareRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"user": "bob@example.com", "role": "editor"}]},
    )

    user: str = Field(
        min_length=1,
        max_length=320,
        description="The user to share with: their id, username or email",
    )
    role: Role = Field(strict=False)  # strict would take only a Role object, never JSON's string


class Share(BaseModel):
    """One user's share of an item."""

    user_id: PydanticObjectId
    username: str | None = Field(description="null when the account has since gone")
    role: Role
    created_at: datetime
    updated_at: datetime

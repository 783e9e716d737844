"""Personal access tokens: how a program signs in without a person's password.

A token is shown once, at creation (`dsk_<id>_<secret>`); only the SHA-256 of its
secret is stored. Its scopes bound what it may do; it can never manage tokens,
passwords, email or sessions (those need a password login).
"""

from datetime import datetime
from typing import Annotated, Literal

from annotated_types import Interval
from beanie import PydanticObjectId
from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field
from pymongo import IndexModel

from documents.base import ApiDocument
from documents.item import Title

Scope = Literal["items:read", "items:write", "items:share", "account:read", "webhooks:write"]
SCOPES: dict[str, str] = {
    "items:read": "Read your items and those shared with you, and watch them live",
    "items:write": "Create, change and delete your items; change those shared with you to edit",
    "items:share": "Share your items, change and end their shares, leave others' shares",
    "account:read": "Read your account",
    "webhooks:write": "Create, change and delete your webhooks, and read their deliveries",
}
MAX_ACCESS_TOKENS = 100  # live tokens per account
MAX_LIFETIME_DAYS = 3650


class AccessToken(ApiDocument):
    user_id: PydanticObjectId
    name: str
    scopes: list[Scope]
    secret_hash: str  # sha256 of the secret; the secret itself is never stored
    token_version: int  # the user's at creation: deactivation or a password reset ends it
    created_at: datetime
    expires_at: datetime | None = None  # None: until revoked
    last_used_at: datetime | None = None  # written at most once a minute

    class Settings:
        name = "access_tokens"
        indexes = [  # noqa: RUF012
            IndexModel("user_id"),
            IndexModel("expires_at", expireAfterSeconds=0),  # null never expires
        ]


def _whole_number(value: object) -> object:
    """JSON Schema's `integer` takes `30.0` too (a number with no fraction)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _distinct(scopes: list[str]) -> list[str]:
    if len(set(scopes)) != len(scopes):
        raise ValueError("each scope at most once")
    return scopes


class AccessTokenCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"name": "nightly sync", "scopes": ["items:read"], "expires_in_days": 90}]
        },
    )

    name: Annotated[Title, Field(max_length=100, description="What the token is for")]
    scopes: Annotated[
        list[Scope],
        Field(min_length=1, max_length=len(SCOPES), json_schema_extra={"uniqueItems": True}),
        AfterValidator(_distinct),
    ]
    expires_in_days: Annotated[
        Annotated[int, Interval(ge=1, le=MAX_LIFETIME_DAYS), BeforeValidator(_whole_number)] | None,
        Field(description="Omitted or null: valid until revoked"),
    ] = None


class AccessTokenPublic(BaseModel):
    """A token as its owner sees it later: never its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: PydanticObjectId = Field(validation_alias=AliasChoices("id", "_id"))
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = None


class AccessTokenCreated(AccessTokenPublic):
    token: str = Field(description="Shown this once: send it as `Authorization: Bearer <token>`")

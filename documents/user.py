"""Accounts: the stored `User` and the shapes clients send and see."""

import re
from datetime import datetime
from typing import Annotated, Self

from beanie import PydanticObjectId
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pymongo import IndexModel
from pymongo.collation import Collation

from documents.base import ECMA_WHITESPACE, NOT_NULL, ApiDocument, reject_nulls, utcnow

# Case-insensitive comparison: unique indexes and look-ups both use it.
CASE_INSENSITIVE = Collation(locale="en", strength=2)
BCRYPT_MAX_BYTES = 72
MAX_SESSIONS = 100

Username = Annotated[
    str, StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
]
# Its length as sent (what `maxLength` checks), then trimmed.
FullName = Annotated[
    str, Field(max_length=100), AfterValidator(lambda name: name.strip(ECMA_WHITESPACE))
]


PASSWORD_MIN_LENGTH = 8
# What check_password asks, as the schema's `pattern` says it: an ASCII digit and an
# ASCII uppercase letter, in either order, anywhere (`[\s\S]` crosses line breaks).
PASSWORD_PATTERN = r"[0-9][\s\S]*[A-Z]|[A-Z][\s\S]*[0-9]"


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"password must be at least {PASSWORD_MIN_LENGTH} characters")
    if not re.search(r"[0-9]", password):
        raise ValueError("password must contain a digit (0-9)")
    if not re.search(r"[A-Z]", password):
        raise ValueError("password must contain an uppercase letter (A-Z)")
    # bcrypt ignores everything past 72 bytes; refuse rather than truncate silently.
    if len(password.encode("utf-8", "surrogatepass")) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8")
    return password


# The schema states every rule; the validator enforces them with messages that say which
# one failed. At most 72 UTF-8 bytes cannot be a JSON Schema keyword: 72 characters is
# (a longer one can never fit), and the description says the rest.
Password = Annotated[
    str,
    Field(
        description=(
            f"At least {PASSWORD_MIN_LENGTH} characters with a digit (0-9) and an "
            f"uppercase letter (A-Z); at most {BCRYPT_MAX_BYTES} bytes in UTF-8 (bcrypt's "
            "limit: longer is refused, never truncated)."
        ),
        json_schema_extra={
            "format": "password",
            "minLength": PASSWORD_MIN_LENGTH,
            "maxLength": BCRYPT_MAX_BYTES,
            "pattern": PASSWORD_PATTERN,
        },
    ),
    Field(max_length=256),
    AfterValidator(check_password),
]
EmailAddress = Annotated[
    EmailStr,
    Field(
        description=(
            "An email address: a dot-atom local part (no quotes), a domain name (no IP "
            "literal) that is not special-use (such as .arpa, .local, .localhost, .onion, "
            ".invalid, .test)."
        )
    ),
]


class User(ApiDocument):
    email: str
    username: str
    full_name: str | None = None
    hashed_password: str
    is_active: bool = True
    is_superuser: bool = False
    email_verified: bool = False
    # Bumped whenever existing access tokens must stop working (password change, deactivation).
    token_version: int = 0
    # The sessions whose access tokens are honoured (most recent last, at most MAX_SESSIONS).
    session_ids: list[PydanticObjectId] = Field(default_factory=list)
    # The personal access tokens honoured (revoking one pulls it; logout-all empties it).
    access_token_ids: list[PydanticObjectId] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "users"
        indexes = [  # noqa: RUF012
            IndexModel("email", unique=True, collation=CASE_INSENSITIVE, name="email_ci"),
            IndexModel("username", unique=True, collation=CASE_INSENSITIVE, name="username_ci"),
        ]


class UserPublic(BaseModel):
    """A user as clients see it: never the hash or token version."""

    model_config = ConfigDict(from_attributes=True)

    id: PydanticObjectId = Field(validation_alias=AliasChoices("id", "_id"))
    email: str
    username: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    email_verified: bool
    created_at: datetime
    updated_at: datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # as the schema says: 0 is not false, "1" is not 1
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "username": "ada",
                    "password": "Analytical-Engine-1843",
                    "full_name": "Ada Lovelace",
                }
            ]
        },
    )

    email: EmailAddress
    username: Username
    password: Password
    full_name: FullName | None = None
    is_superuser: bool = False


class UserUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # as the schema says: 0 is not false, "1" is not 1
        json_schema_extra={"examples": [{"full_name": "Ada King"}]},
    )

    email: EmailAddress | SkipJsonSchema[None] = NOT_NULL
    username: Username | SkipJsonSchema[None] = NOT_NULL
    full_name: FullName | None = None
    password: Password | SkipJsonSchema[None] = NOT_NULL
    current_password: str | None = Field(
        default=None,
        max_length=256,
        description="Your current password: required to change your own password or email",
    )
    is_active: bool | SkipJsonSchema[None] = NOT_NULL
    is_superuser: bool | SkipJsonSchema[None] = NOT_NULL

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        reject_nulls(self, ("email", "username", "password", "is_active", "is_superuser"))
        return self

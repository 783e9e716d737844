"""Logins: one `Session` per sign-in, holding its rotating refresh token (hashed)."""

from datetime import datetime

from beanie import PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import IndexModel

from documents.base import ApiDocument


class Session(ApiDocument):
    user_id: PydanticObjectId
    refresh_hash: str  # sha256 of the current refresh secret; the secret itself is never stored
    previous_hash: str | None = None  # the spent one: presenting it again is reuse
    # sha256 of the login's family, carried by every refresh token it ever issued: any
    # of them that is not the current one is reuse, however old.
    family_hash: str | None = None
    # The current secret, encrypted under a key only the previous secret yields: lets a client
    # whose refresh response was lost get it again within the grace window, and nobody else.
    replay: str | None = None
    rotated_at: datetime | None = None
    user_agent: str | None = None
    client: str | None = None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    class Settings:
        name = "sessions"
        indexes = [  # noqa: RUF012
            IndexModel("user_id"),
            IndexModel("expires_at", expireAfterSeconds=0),
        ]


class SessionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: PydanticObjectId
    user_agent: str | None
    client: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool = Field(default=False, description="The session of this request's token")

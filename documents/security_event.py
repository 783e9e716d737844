"""An account's security log: sign-ins, ended sessions, password, email and token changes."""

from datetime import datetime
from typing import Any, Literal

from beanie import PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pymongo import IndexModel

from documents.base import ApiDocument

EventType = Literal[
    "login.succeeded",
    "login.failed",
    "login.throttled",
    "refresh.reuse_detected",
    "session.ended",
    "sessions.ended_all",
    "password.changed",
    "password.reset",
    "email.changed",
    "email.verified",
    "token.created",
    "token.revoked",
    "password.check_failed",
    "account.deactivated",
    "account.reactivated",
    "account.role_changed",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
# What a client sent, kept as sent but no longer than this.
CLIENT_IP_MAX, USER_AGENT_MAX = 64, 300


class SecurityEvent(ApiDocument):
    """One event of one account, removed by a TTL index at `expires_at`."""

    user_id: PydanticObjectId
    type: EventType
    at: datetime
    client_ip: str | None = Field(default=None, max_length=CLIENT_IP_MAX)
    user_agent: str | None = Field(default=None, max_length=USER_AGENT_MAX)
    detail: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime

    class Settings:
        name = "security_events"
        indexes = [  # noqa: RUF012
            IndexModel([("user_id", 1), ("at", -1), ("_id", -1)]),  # an account's, newest first
            IndexModel("expires_at", expireAfterSeconds=0),
        ]


class SecurityEventPublic(BaseModel):
    """An event as its account (or a superuser) reads it: never a secret, a token, a
    hash or a link; the client's address and user agent as it sent them."""

    model_config = ConfigDict(from_attributes=True)

    id: PydanticObjectId = Field(validation_alias="_id")
    # A string, not an enum: a client generated today must still read a type added later.
    type: str = Field(
        description=f"One of {', '.join(f'`{t}`' for t in EVENT_TYPES)} (more may come)"
    )
    at: datetime
    client_ip: str | None = Field(
        default=None, description="As the server saw it (see TRUSTED_PROXIES)"
    )
    user_agent: str | None = Field(
        default=None, description=f"As sent, at most {USER_AGENT_MAX} characters"
    )
    detail: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="What the event concerns: a session or token id, a token's name and "
        "scopes, the old and new email, who acted when it was not the account itself",
    )

"""Webhooks: where an account's item changes are POSTed, signed (Standard Webhooks).

A webhook's secrets are stored sealed (api/webhooks/signing.py): the database alone
does not reveal them. Its deliveries are entries of the durable queue (`outbox`, the
webhook channel: api/webhooks/channel.py), shown by `DeliveryPublic`.
"""

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from beanie import PydanticObjectId
from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from pymongo import IndexModel

from documents.base import NOT_NULL, ApiDocument, reject_nulls

EventType = Literal[
    "item.created",
    "item.updated",
    "item.deleted",
    "item.restored",
    "item.shared",
    "item.unshared",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
PING = "webhook.ping"
URL_MAX = 2048
DESCRIPTION_MAX = 500

Url = Annotated[
    str,
    Field(
        min_length=8,
        max_length=URL_MAX,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://",
        description="`http` or `https`; every address its host resolves to must be public",
        examples=["https://example.com/hooks/docstore"],
    ),
]


def _distinct(events: list[str]) -> list[str]:
    if len(set(events)) != len(events):
        raise ValueError("each event at most once")
    return events


Events = Annotated[
    list[EventType],
    Field(
        min_length=1,
        max_length=len(EVENT_TYPES),
        json_schema_extra={"uniqueItems": True},
        description="The events delivered (default: all of them)",
    ),
    AfterValidator(_distinct),
]
WebhookDescription = Annotated[str, Field(max_length=DESCRIPTION_MAX)]


class SealedSecret(BaseModel):
    sealed: str  # api/webhooks/signing.py: opens only for its webhook
    created_at: datetime
    retires_at: datetime | None = None  # after a rotation: signs until then


class Webhook(ApiDocument):
    owner_id: PydanticObjectId
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    disabled_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    secrets: list[SealedSecret]
    secrets_version: int = 0  # rotations compare and swap on it
    failures_in_row: int = 0  # deliveries given up on since the last one delivered
    # Which of its owner's WEBHOOKS_MAX_PER_USER places it takes: unique per owner, so no
    # burst of creations can pass the limit.
    slot: int = 0

    class Settings:
        name = "webhooks"
        indexes = [  # noqa: RUF012
            IndexModel([("owner_id", 1), ("created_at", -1), ("_id", -1)]),
            IndexModel(
                [("owner_id", 1), ("slot", 1)],
                unique=True,
                partialFilterExpression={"slot": {"$exists": True}},
            ),
        ]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks/docstore",
                    "events": ["item.created", "item.updated"],
                    "description": "search indexer",
                }
            ]
        },
    )

    url: Url
    events: Events = Field(default_factory=lambda: list(EVENT_TYPES))  # type: ignore[arg-type]
    description: WebhookDescription = ""


class WebhookUpdate(BaseModel):
    """Partial: what is left out stays. `enabled: true` turns a disabled webhook back on."""

    model_config = ConfigDict(extra="forbid")

    url: Url | SkipJsonSchema[None] = NOT_NULL
    events: Events | SkipJsonSchema[None] = NOT_NULL
    description: WebhookDescription | SkipJsonSchema[None] = NOT_NULL
    enabled: bool | SkipJsonSchema[None] = NOT_NULL

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        reject_nulls(self, ("url", "events", "description", "enabled"))
        return self


class WebhookPublic(BaseModel):
    """A webhook as its owner sees it: never its secret."""

    id: PydanticObjectId = Field(validation_alias=AliasChoices("id", "_id"))
    url: str
    events: list[EventType]
    description: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="`whsec_...`, shown this once: verify each delivery's signature with it"
    )


class WebhookSecret(BaseModel):
    secret: str = Field(description="The new `whsec_...` secret, shown this once")
    previous_valid_until: datetime | None = Field(
        description="Until then deliveries are signed by the previous secret too"
    )


DeliveryStatus = Literal["pending", "delivered", "dead"]


class DeliveryPublic(BaseModel):
    """One delivery of one event to one webhook, with its latest attempt."""

    id: str = Field(
        validation_alias=AliasChoices("id", "_id"),
        description="The `webhook-id` header of every attempt",
    )
    type: str = Field(description="An event type, or `webhook.ping`")
    status: DeliveryStatus
    attempts: int
    response_status: int | None = Field(description="The receiver's answer to the last attempt")
    error: str | None = Field(description="Why the last attempt failed")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending only)")

    @classmethod
    def of(cls, entry: dict[str, Any]) -> "DeliveryPublic":
        """From a queue entry: `sending` shows as pending, `sent` as delivered."""
        stored = entry.get("status")
        status = {"sent": "delivered", "dead": "dead"}.get(str(stored), "pending")
        return cls.model_validate(
            {
                **entry,
                "status": status,
                "error": entry.get("last_error") if status != "delivered" else None,
                "next_attempt_at": entry.get("next_attempt_at") if status == "pending" else None,
            }
        )

"""The email outbox: every message is a document first, written with the change causing it."""

from datetime import datetime
from enum import StrEnum

from pydantic import Field
from pymongo import IndexModel

from documents.base import ApiDocument, utcnow


class Delivery(StrEnum):
    pending = "pending"  # waiting for its next attempt (or for a lapsed lease to be re-claimed)
    sending = "sending"  # claimed by a worker until lease_until
    sent = "sent"
    dead = "dead"  # gave up after the last attempt; `docstore-admin outbox --retry-dead`


class OutboxMessage(ApiDocument):
    """An entry of the durable queue (api/core/queue.py). The delivery fields are the
    queue's; `kind` to `html` are the email channel's (api/mail/channel.py)."""

    channel: str = "email"  # who delivers it; entries from before channels are email
    kind: str
    to: str
    subject: str
    text: str
    html: str
    # The entry's id, the same on every attempt, so a retry after an uncertain delivery
    # can be recognised as a duplicate downstream (an email's Message-ID header).
    message_id: str
    status: Delivery = Delivery.pending
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    lease_until: datetime | None = None
    leased_by: str | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    last_attempt_at: datetime | None = None
    # The body's secret (a reset or confirmation token), sealed: see api/core/queue.py.
    secret: str | None = None
    # Set when the message is sent or dead: the TTL index removes it then.
    purge_at: datetime | None = None

    class Settings:
        name = "outbox"
        indexes = [  # noqa: RUF012
            IndexModel([("status", 1), ("next_attempt_at", 1)]),
            IndexModel("message_id", unique=True),
            IndexModel("purge_at", expireAfterSeconds=0),
            # A webhook's delivery log, newest first; an item's deliveries (to scrub them).
            IndexModel([("webhook_id", 1), ("created_at", -1), ("_id", -1)], sparse=True),
            IndexModel("item_id", sparse=True),
        ]

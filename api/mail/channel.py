"""Email, as a channel of the durable queue (api/core/queue.py): what a message entry
holds, how it is sent, and what is kept of it once sent.

A message that carries a token (a password reset, an email confirmation) shows
TOKEN_MARK where it goes; the token is stored sealed by the queue and put into the body
only when the message is sent. Every attempt carries the same Message-ID, so a retry
after an uncertain send can be recognised as a duplicate downstream.
"""

import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from api.core.queue import Entry, collection
from api.mail.transports import Transport, to_email
from documents import Delivery, OutboxMessage
from documents.base import utcnow

log = logging.getLogger("docstore.outbox")

NAME = "email"
TOKEN_MARK = "\u27e6token\u27e7"  # where a message's secret goes in its body, at send time


def new_message(kind: str, to: str, subject: str, text: str, html: str) -> OutboxMessage:
    """A message to enqueue; where the body shows TOKEN_MARK, the queue puts its secret."""
    message_id = f"<{secrets.token_hex(16)}@docstore>"
    return OutboxMessage(
        kind=kind, to=to, subject=subject, text=text, html=html, message_id=message_id
    )


class EmailChannel:
    name = NAME

    def __init__(
        self, transport: Transport, sender: str, max_attempts: int, backoff_s: float
    ) -> None:
        self.transport, self.sender = transport, sender
        self.max_attempts, self.backoff_s = max_attempts, backoff_s

    def binding(self, entry: Mapping[str, Any]) -> str:
        return f"{entry['message_id']}\n{entry['to']}"

    async def deliver(self, entry: Mapping[str, Any], secret: str | None) -> None:
        message = OutboxMessage.model_validate(entry)
        if secret is not None:
            text, html = (part.replace(TOKEN_MARK, secret) for part in (message.text, message.html))
            message = message.model_copy(update={"text": text, "html": html})
        await self.transport.send(to_email(message, self.sender))

    async def gave_up(self, entry: Mapping[str, Any], error: Exception) -> None:
        """Nothing more: the dead message waits for `docstore-admin outbox --retry-dead`."""

    def delivered(self, entry: Mapping[str, Any]) -> Entry:
        return {"text": "", "html": ""}

    def describe(self, entry: Mapping[str, Any]) -> str:
        return f"{entry.get('message_id')} to {entry.get('to')}"


# The kinds whose bodies carried their token in the clear before bodies were sealed.
LEGACY_TOKEN_KINDS = ("password-reset", "verify-email")


async def settle_legacy(retention_days: int) -> None:
    """Bring email settled before sealing (it has no `purge_at`) under today's rules, once
    (idempotent, on the status index): a sent message loses its body and expires like
    any other; a dead one that carried a token in the clear is removed (it cannot be
    retried safely; its owner asks again); any other dead one keeps its body and
    expires. (Messages from before channels name none: they are email's, as the queue's
    `default` says.)"""
    messages = collection()
    email: dict[str, Any] = {"channel": {"$in": [NAME, None]}}
    purge_at = utcnow() + timedelta(days=retention_days)
    sent = await messages.update_many(
        {"status": Delivery.sent, "purge_at": None, **email},
        {"$set": {"text": "", "html": "", "secret": None, "purge_at": purge_at}},
    )
    clear = {"status": Delivery.dead, "purge_at": None, "secret": None, **email}
    removed = await messages.delete_many({**clear, "kind": {"$in": LEGACY_TOKEN_KINDS}})
    dead = await messages.update_many(
        {"status": Delivery.dead, "purge_at": None, **email}, {"$set": {"purge_at": purge_at}}
    )
    if sent.modified_count or removed.deleted_count or dead.modified_count:
        log.warning(
            "outbox: settled %d sent and %d dead messages from before sealing; "
            "removed %d dead ones that held a token in the clear",
            sent.modified_count,
            dead.modified_count,
            removed.deleted_count,
        )

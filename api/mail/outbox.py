"""The delivery worker: claims outbox messages with a lease, sends, retries with backoff.

Several workers (processes, hosts) may run on one database: a message is claimed by
one atomic update that sets a lease, so no two send it at once; if a worker dies
mid-send, its lease lapses and another re-claims the message. Delivery is at least
once, and every attempt carries the same Message-ID.
"""

import logging
import random
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError
from starlette.requests import HTTPConnection

from api.config import Settings
from api.core.background import Background
from api.core.metrics import Metrics
from api.mail.transports import Transport, to_email
from documents import Delivery, OutboxMessage
from documents.base import utcnow

log = logging.getLogger("docstore.outbox")


async def enqueue(message: OutboxMessage, session: AsyncClientSession | None = None) -> None:
    """Store a message to send; inside the caller's transaction when `session` is given."""
    document = message.model_dump(by_alias=True, exclude={"id", "revision_id"})
    await OutboxMessage.get_pymongo_collection().insert_one(document, session=session)


async def counts() -> dict[str, int]:
    """How many messages are in each delivery status (every status named, zero or not)."""
    grouped = await OutboxMessage.get_pymongo_collection().aggregate(
        [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    )
    found = {doc["_id"]: doc["n"] async for doc in grouped}
    return {status.value: found.get(status.value, 0) for status in Delivery}


def instrument(metrics: Metrics) -> None:
    """`docstore_outbox_messages{status}`, counted when scraped."""
    gauge = metrics.gauge(
        "docstore_outbox_messages", "Email outbox messages by delivery status", ["status"]
    )

    async def refresh() -> None:
        for status, count in (await counts()).items():
            gauge.labels(status).set(count)

    metrics.on_scrape(refresh)


def new_message(kind: str, to: str, subject: str, text: str, html: str) -> OutboxMessage:
    message_id = f"<{secrets.token_hex(16)}@docstore>"
    return OutboxMessage(
        kind=kind, to=to, subject=subject, text=text, html=html, message_id=message_id
    )


class OutboxWorker(Background):
    def __init__(self, settings: Settings, transport: Transport) -> None:
        super().__init__(f"worker-{secrets.token_hex(4)}")
        self.settings, self.transport = settings, transport

    def nudge(self) -> None:
        """Wake this process's worker: a message was just committed."""
        self.wake.set()

    async def run(self) -> None:
        while not self.stopping:
            try:
                while not self.stopping and await self.deliver_one():
                    pass
            except PyMongoError as error:  # the database is away: try again later
                log.warning("outbox worker cannot reach the database: %s", error)
            if not self.stopping:
                await self.pause(self.settings.outbox_poll_s)  # woken when mail is enqueued

    async def deliver_one(self) -> bool:
        """Claim and try one due message; False when none is due."""
        message = await self._claim()
        if message is None:
            return False
        try:
            await self.transport.send(to_email(message, self.settings.mail_from))
        except Exception as error:  # any transport failure is retried later
            await self._failed(message, error)
        else:
            await self._settle(message, {"status": Delivery.sent, "sent_at": utcnow()})
        return True

    async def _claim(self) -> OutboxMessage | None:
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.outbox_lease_s)
        claimed = await OutboxMessage.get_pymongo_collection().find_one_and_update(
            {
                "$or": [
                    {"status": Delivery.pending, "next_attempt_at": {"$lte": now}},
                    {"status": Delivery.sending, "lease_until": {"$lt": now}},  # its worker died
                ]
            },
            {
                "$set": {"status": Delivery.sending, "lease_until": lease, "leased_by": self.name},
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", 1)],
            return_document=ReturnDocument.AFTER,
        )
        return None if claimed is None else OutboxMessage.model_validate(claimed)

    async def _failed(self, message: OutboxMessage, error: Exception) -> None:
        if message.attempts >= self.settings.outbox_max_attempts:
            log.error("giving up on %s to %s: %s", message.message_id, message.to, error)
            await self._settle(message, {"status": Delivery.dead, "last_error": str(error)})
            return
        # Exponential backoff with full jitter, so many failed messages do not retry in step.
        delay = self.settings.outbox_backoff_s * 2 ** (message.attempts - 1)
        retry_at = utcnow() + timedelta(seconds=random.uniform(delay / 2, delay))
        log.warning(
            "sending %s failed (attempt %d): %s", message.message_id, message.attempts, error
        )
        await self._settle(
            message,
            {"status": Delivery.pending, "next_attempt_at": retry_at, "last_error": str(error)},
        )

    async def _settle(self, message: OutboxMessage, changes: dict[str, Any]) -> None:
        # Only while we still hold the lease: if it lapsed, another worker owns the message.
        await OutboxMessage.get_pymongo_collection().update_one(
            {"_id": message.id, "leased_by": self.name, "status": Delivery.sending},
            {"$set": {**changes, "lease_until": None}},
        )


def worker_of(connection: HTTPConnection) -> OutboxWorker:
    worker: OutboxWorker = connection.app.state.outbox
    return worker


MailWorker = Annotated[OutboxWorker, Depends(worker_of)]

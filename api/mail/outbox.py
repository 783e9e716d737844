"""The delivery worker: claims outbox messages with a lease, sends, retries with backoff.

Several workers (processes, hosts) may run on one database: a message is claimed by
one atomic update that sets a lease, so no two send it at once; if a worker dies
mid-send, its lease lapses and another re-claims the message. Delivery is at least
once, and every attempt carries the same Message-ID.

No usable secret rests in the outbox: a message's token (a password reset, an email
confirmation) is stored sealed (AES-GCM under a key derived from the secret key) and
put into the body only when it is sent; a sent message keeps no body, and sent and
dead messages expire after OUTBOX_RETENTION_DAYS.
"""

import logging
import random
import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError
from starlette.requests import HTTPConnection

from api.config import Settings
from api.core import sealing
from api.core.background import Background
from api.core.metrics import Metrics
from api.core.services import dependency
from api.mail.transports import Transport, to_email
from documents import Delivery, OutboxMessage
from documents.base import utcnow

log = logging.getLogger("docstore.outbox")


TOKEN_MARK = "\u27e6token\u27e7"  # where a message's secret goes in its body, at send time
COUNTS_FRESH_S = 5.0  # /metrics counts the outbox at most this often


class Sealer:
    """Seals a message's secret under a key derived from the secret key (and opens what the
    previous keys sealed, so rotating the key loses no queued mail)."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        self._keys = [sealing.key("docstore-outbox", s) for s in (secret, *previous)]

    def seal(self, plain: str, bound_to: str) -> str:
        """`plain`, sealed so that it opens only with the same `bound_to` (the message's
        id and recipient: pointing a queued message elsewhere makes it unopenable)."""
        return sealing.seal(self._keys[0], plain, bound_to)

    def open(self, sealed: str, bound_to: str) -> str:
        plain = sealing.unseal(self._keys, sealed, bound_to)
        if plain is None:
            raise ValueError("the message's secret does not open: another key, or another message")
        return plain


def _binding(message: OutboxMessage) -> str:
    return f"{message.message_id}\n{message.to}"


async def counts() -> dict[str, int]:
    """How many messages are in each delivery status (every status named, zero or not)."""
    grouped = await OutboxMessage.get_pymongo_collection().aggregate(
        [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    )
    found = {doc["_id"]: doc["n"] async for doc in grouped}
    return {status.value: found.get(status.value, 0) for status in Delivery}


# The kinds whose bodies carried their token in the clear before bodies were sealed.
LEGACY_TOKEN_KINDS = ("password-reset", "verify-email")


async def settle_legacy(retention_days: int) -> None:
    """Bring messages settled before sealing (they have no `purge_at`) under today's rules,
    once: a sent one loses its body and expires like any other; a dead one that carried
    a token in the clear is removed (it cannot be retried safely; its owner asks again);
    any other dead one keeps its body and expires. Idempotent, on the status index."""
    messages = OutboxMessage.get_pymongo_collection()
    purge_at = utcnow() + timedelta(days=retention_days)
    sent = await messages.update_many(
        {"status": Delivery.sent, "purge_at": None},
        {"$set": {"text": "", "html": "", "secret": None, "purge_at": purge_at}},
    )
    clear = {"status": Delivery.dead, "purge_at": None, "secret": None}
    removed = await messages.delete_many({**clear, "kind": {"$in": LEGACY_TOKEN_KINDS}})
    dead = await messages.update_many(
        {"status": Delivery.dead, "purge_at": None}, {"$set": {"purge_at": purge_at}}
    )
    if sent.modified_count or removed.deleted_count or dead.modified_count:
        log.warning(
            "outbox: settled %d sent and %d dead messages from before sealing; "
            "removed %d dead ones that held a token in the clear",
            sent.modified_count,
            dead.modified_count,
            removed.deleted_count,
        )


def instrument(metrics: Metrics) -> None:
    """`docstore_outbox_messages{status}`, counted when scraped."""
    gauge = metrics.gauge(
        "docstore_outbox_messages", "Email outbox messages by delivery status", ["status"]
    )

    counted_at = -COUNTS_FRESH_S

    async def refresh() -> None:
        # Scrapes may come often, and from several scrapers: count at most every few seconds.
        # Marked first: with the database away, scrapes in between do not each wait for it.
        nonlocal counted_at
        if time.monotonic() - counted_at < COUNTS_FRESH_S:
            return
        counted_at = time.monotonic()
        for status, count in (await counts()).items():
            gauge.labels(status).set(count)

    metrics.on_scrape(refresh)


def new_message(kind: str, to: str, subject: str, text: str, html: str) -> OutboxMessage:
    """A message to enqueue; where the body shows TOKEN_MARK, enqueue puts its secret."""
    message_id = f"<{secrets.token_hex(16)}@docstore>"
    return OutboxMessage(
        kind=kind, to=to, subject=subject, text=text, html=html, message_id=message_id
    )


class OutboxWorker(Background):
    def __init__(self, settings: Settings, transport: Transport, sealer: Sealer) -> None:
        super().__init__(f"worker-{secrets.token_hex(4)}")
        self.settings, self.transport, self.sealer = settings, transport, sealer

    async def enqueue(
        self,
        message: OutboxMessage,
        session: AsyncClientSession | None = None,
        secret: str | None = None,
    ) -> None:
        """Store a message to send, `secret` sealed; inside the caller's transaction when
        `session` is given."""
        document = message.model_dump(by_alias=True, exclude={"id", "revision_id"})
        sealed = self.sealer.seal(secret, _binding(message)) if secret is not None else None
        document["secret"] = sealed
        await OutboxMessage.get_pymongo_collection().insert_one(document, session=session)

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
            await self.transport.send(to_email(self._unsealed(message), self.settings.mail_from))
        except Exception as error:  # any transport failure is retried later
            await self._failed(message, error)
        else:
            now = utcnow()
            sent = {"status": Delivery.sent, "sent_at": now, "purge_at": self._purge_at(now)}
            # What was sent is kept as its envelope only: no body, no secret.
            await self._settle(message, {**sent, "text": "", "html": "", "secret": None})
        return True

    def _unsealed(self, message: OutboxMessage) -> OutboxMessage:
        if message.secret is None:
            return message
        secret = self.sealer.open(message.secret, _binding(message))
        text, html = (part.replace(TOKEN_MARK, secret) for part in (message.text, message.html))
        unsealed: OutboxMessage = message.model_copy(update={"text": text, "html": html})
        return unsealed

    def _purge_at(self, now: datetime) -> datetime:
        return now + timedelta(days=self.settings.outbox_retention_days)

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
            # Its body stays (the secret sealed) for `docstore-admin outbox --retry-dead`.
            dead = {"status": Delivery.dead, "last_error": str(error)}
            await self._settle(message, {**dead, "purge_at": self._purge_at(utcnow())})
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


MailWorker = Annotated[OutboxWorker, Depends(dependency(worker_of))]

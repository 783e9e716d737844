"""The durable queue: work to deliver elsewhere, stored first, delivered at least once.

Every entry is a document in one collection (`outbox`), written by whoever has work to
send: inside the caller's transaction when it passes its session to `enqueue`, so the
work exists exactly when the change that causes it commits. Channels (email today)
say how an entry is delivered; the queue does the rest for all of them:

- claim: one atomic update sets a lease, so no two workers (processes, hosts) deliver
  an entry at once; if a worker dies mid-delivery its lease lapses and another claims it;
- retry: a failed attempt is tried again after an exponential backoff with jitter
  (api/core/retry.py), and after OUTBOX_MAX_ATTEMPTS the entry is dead;
- manual retry: `retry_dead` (`docstore-admin outbox --retry-dead`) queues dead ones again;
- expiry: settled entries (delivered or dead) carry `purge_at`, a TTL index removes them;
- secrets: a value an entry must carry but nobody may read from the database (a reset
  token) is stored sealed, bound to the entry, and opened only to deliver it;
- metrics: entries by channel and status, counted when scraped.
"""

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Protocol

from fastapi import Depends
from pydantic import BaseModel
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from api.config import Settings
from api.core import retry, sealing
from api.core.background import Background
from api.core.metrics import Metrics
from api.core.services import part
from documents import Delivery, OutboxMessage
from documents.base import utcnow

log = logging.getLogger("docstore.outbox")
Entry = dict[str, Any]
COUNTS_FRESH_S = 5.0  # /metrics counts the queue at most this often
UNKNOWN = "unknown"  # the channel counted for entries whose channel is not a name
# Entries another tool wrote that no claim may take: a list of channels (`$in` would
# match one holding a known name, then the entry names no channel), and attempts that are
# not a number (`$inc` fails on them, and the claim, tried again, would fail for ever,
# blocking every entry due after it). They stay as they are, counted, for a person to see.
_UNCLAIMABLE = [
    {"channel": {"$type": "array"}},
    {"attempts": {"$type": "array"}},
    {"attempts": {"$exists": True, "$not": {"$type": "number"}}},
]


class Channel(Protocol):
    """How entries of one kind are delivered."""

    name: str

    def binding(self, entry: Mapping[str, Any]) -> str:
        """What the entry's sealed secret is bound to (its id and destination:
        pointing a queued entry elsewhere makes its secret unopenable)."""
        ...

    async def deliver(self, entry: Mapping[str, Any], secret: str | None) -> None:
        """Deliver once; raise to have it tried again later."""
        ...

    def delivered(self, entry: Mapping[str, Any]) -> Entry:
        """What to keep of a delivered entry, as fields to set (its body is dropped)."""
        ...

    def describe(self, entry: Mapping[str, Any]) -> str:
        """The entry in a log line (its id and destination)."""
        ...


class Sealer:
    """Seals an entry's secret under a key derived from the secret key (and opens what
    the previous keys sealed, so rotating the key loses no queued work)."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        self._keys = [sealing.key("docstore-outbox", s) for s in (secret, *previous)]

    def seal(self, plain: str, bound_to: str) -> str:
        return sealing.seal(self._keys[0], plain, bound_to)

    def open(self, sealed: str, bound_to: str) -> str:
        plain = sealing.unseal(self._keys, sealed, bound_to)
        if plain is None:
            raise ValueError("the entry's secret does not open: another key, or another entry")
        return plain


def collection() -> AsyncCollection[Entry]:
    return OutboxMessage.get_pymongo_collection()


async def counts(unnamed: str = "") -> dict[tuple[str, str], int]:
    """Entries by (channel, status), every status of every channel seen named; entries
    that name no channel are counted as `unnamed`'s, those whose channel is not a name
    (another tool wrote it) as UNKNOWN's."""
    grouped = await collection().aggregate(
        [{"$group": {"_id": {"c": "$channel", "s": "$status"}, "n": {"$sum": 1}}}]
    )
    found: dict[tuple[str, str], int] = {}
    async for doc in grouped:
        channel, status = doc["_id"].get("c"), doc["_id"].get("s")
        if channel is not None and not isinstance(channel, str):
            channel = UNKNOWN
        if isinstance(status, str):  # any other is no status of ours: not counted
            key = (channel or unnamed, status)
            found[key] = found.get(key, 0) + doc["n"]
    return {
        (channel, status.value): found.get((channel, status.value), 0)
        for channel in sorted({channel for channel, _ in found})
        for status in Delivery
    }


async def counts_by_status() -> dict[str, int]:
    """Entries by status, all channels together (every status named, zero or not)."""
    return _by_status(await counts())


def _by_status(found: Mapping[tuple[str, str], int]) -> dict[str, int]:
    totals = dict.fromkeys((status.value for status in Delivery), 0)
    for (_, status), count in found.items():
        totals[status] += count
    return totals


async def retry_dead(channel: str | None = None) -> int:
    """Queue dead entries (of one channel, or all) for delivery again; how many."""
    scope = {} if channel is None else {"channel": channel}
    result = await collection().update_many(
        {"status": Delivery.dead, **scope},
        {
            "$set": {"status": Delivery.pending, "attempts": 0, "next_attempt_at": utcnow()},
            "$unset": {"purge_at": ""},  # queued again: not for the TTL index now
        },
    )
    return result.modified_count


class DurableQueue(Background):
    def __init__(
        self,
        settings: Settings,
        channels: Sequence[Channel],
        sealer: Sealer,
        default: str | None = None,
    ) -> None:
        """`default`: the channel of entries that name none (written before channels,
        perhaps by an older process still running in a rolling deploy)."""
        super().__init__(f"worker-{secrets.token_hex(4)}")
        self.settings, self.sealer, self.default = settings, sealer, default
        self.channels = {channel.name: channel for channel in channels}
        if default is not None and default not in self.channels:
            raise ValueError(f"the default channel {default!r} is not one of this queue's")

    async def enqueue(
        self,
        channel: str,
        entry: BaseModel,
        session: AsyncClientSession | None = None,
        secret: str | None = None,
    ) -> None:
        """Store an entry to deliver on `channel`, `secret` sealed; inside the caller's
        transaction when `session` is given (then call `nudge` once it commits)."""
        now = utcnow()
        document = {
            **entry.model_dump(by_alias=True, exclude={"id", "revision_id"}),
            # The queue's own fields: whatever the channel's model says of them.
            "channel": channel,
            "status": Delivery.pending,
            "attempts": 0,
            "next_attempt_at": now,
            "lease_until": None,
            "leased_by": None,
            "last_error": None,
            "created_at": now,
            "sent_at": None,
            "purge_at": None,
        }
        binding = self.channels[channel].binding(document)
        document["secret"] = self.sealer.seal(secret, binding) if secret is not None else None
        await collection().insert_one(document, session=session)

    def nudge(self) -> None:
        """Wake this process's worker: an entry was just committed."""
        self.wake.set()

    async def run(self) -> None:
        while not self.stopping:
            try:
                while not self.stopping and await self.deliver_one():
                    pass
            except PyMongoError as error:  # the database is away: try again later
                log.warning("queue worker cannot reach the database: %s", error)
            if not self.stopping:
                await self.pause(self.settings.outbox_poll_s)  # woken when work is enqueued

    async def deliver_one(self) -> bool:
        """Claim and try one due entry; False when none is due."""
        entry = await self._claim()
        if entry is None:
            return False
        channel = self.channels[entry.get("channel") or str(self.default)]
        try:
            sealed = entry.get("secret")
            secret = self.sealer.open(sealed, channel.binding(entry)) if sealed else None
            await channel.deliver(entry, secret)
        except Exception as error:  # any failure is retried later
            await self._failed(entry, channel, error)
        else:
            now = utcnow()
            sent = {"status": Delivery.sent, "sent_at": now, "purge_at": self._purge_at(now)}
            # What was delivered is kept as its envelope only: no body, no secret.
            await self._settle(entry, {**sent, **channel.delivered(entry), "secret": None})
        return True

    def _purge_at(self, now: datetime) -> datetime:
        return now + timedelta(days=self.settings.outbox_retention_days)

    async def _claim(self) -> Entry | None:
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.outbox_lease_s)
        claimed: Entry | None = await collection().find_one_and_update(
            {
                "channel": {"$in": [*self.channels, *([None] if self.default else [])]},
                "$nor": _UNCLAIMABLE,
                "$or": [
                    {"status": Delivery.pending, "next_attempt_at": {"$lte": now}},
                    {"status": Delivery.sending, "lease_until": {"$lt": now}},  # its worker died
                ],
            },
            {
                "$set": {"status": Delivery.sending, "lease_until": lease, "leased_by": self.name},
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", 1)],
            return_document=ReturnDocument.AFTER,
        )
        return claimed

    async def _failed(self, entry: Entry, channel: Channel, error: Exception) -> None:
        what = channel.describe(entry)
        if entry["attempts"] >= self.settings.outbox_max_attempts:
            log.error("giving up on %s: %s", what, error)
            # Its body stays (the secret sealed) for `docstore-admin outbox --retry-dead`.
            dead = {"status": Delivery.dead, "last_error": str(error)}
            await self._settle(entry, {**dead, "purge_at": self._purge_at(utcnow())})
            return
        wait = retry.delay(entry["attempts"], self.settings.outbox_backoff_s)
        log.warning("sending %s failed (attempt %d): %s", what, entry["attempts"], error)
        retry_at = utcnow() + timedelta(seconds=wait)
        pending = {"status": Delivery.pending, "next_attempt_at": retry_at}
        await self._settle(entry, {**pending, "last_error": str(error)})

    async def _settle(self, entry: Entry, changes: Entry) -> None:
        # Only while we still hold the lease: if it lapsed, another worker owns the entry.
        await collection().update_one(
            {"_id": entry["_id"], "leased_by": self.name, "status": Delivery.sending},
            {"$set": {**changes, "lease_until": None}},
        )


def instrument(metrics: Metrics, unnamed: str = "") -> None:
    """`docstore_queue_entries{channel,status}` (entries that name no channel as
    `unnamed`'s), and `docstore_outbox_messages{status}` (all channels together, as
    dashboards made before channels read it), counted when scraped."""
    by_channel = metrics.gauge(
        "docstore_queue_entries",
        "Durable queue entries by channel and status",
        ["channel", "status"],
    )
    total = metrics.gauge(
        "docstore_outbox_messages", "Durable queue entries by status, all channels", ["status"]
    )
    counted_at = -COUNTS_FRESH_S

    async def refresh() -> None:
        # Scrapes may come often, and from several scrapers: count at most every few seconds.
        # Marked first: with the database away, scrapes in between do not each wait for it.
        nonlocal counted_at
        if time.monotonic() - counted_at < COUNTS_FRESH_S:
            return
        counted_at = time.monotonic()
        found = await counts(unnamed)
        for (channel, status), count in found.items():
            by_channel.labels(channel, status).set(count)
        for status, count in _by_status(found).items():
            total.labels(status).set(count)

    metrics.on_scrape(refresh)


Queue = Annotated[DurableQueue, Depends(part(DurableQueue))]

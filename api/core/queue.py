"""The durable queue: work to deliver elsewhere, stored first, delivered at least once.

Every entry is a document in one collection (`outbox`), written by whoever has work to
send: inside the caller's transaction when it passes its session to `enqueue`, so the
work exists exactly when the change that causes it commits. Channels (email today)
say how an entry is delivered; the queue does the rest for all of them:

- claim: one atomic update sets a lease, so no two workers (processes, hosts) deliver
  an entry at once; if a worker dies mid-delivery its lease lapses and another claims it;
- concurrency: a worker delivers up to OUTBOX_CONCURRENCY entries at once, and at most
  `per_lane` of one lane (a webhook's endpoint): a slow destination holds up only its own;
- retry: a failed attempt is tried again after an exponential backoff with jitter
  (api/core/retry.py), later when the destination asked (`Failed.retry_after_s`), and
  after the channel's `max_attempts` the entry is dead; a `Failed(final=True)` is dead at
  once;
- idempotent enqueue: `enqueue_once` stores entries under ids their cause decides, so
  enqueueing the same work twice (a replay after a crash) stores it once;
- hand-over: entries `enqueue_once` stores while this process's worker runs are stored
  claimed by it (HAND_OVER_MOST waiting at most) and handed to it in memory, so fresh
  work costs no query for what is due and no claim; one that waited long has its lease
  renewed before it is sent; a process killed before delivering them leaves leases that
  lapse, and another worker claims them as any other;
- settling: delivered entries are recorded a group at a time (one update for the
  deliveries with the same outcome that ended meanwhile, up to SETTLE_MOST), each still
  only while its lease is this worker's;
- manual retry: `retry_dead` (`docstore-admin outbox --retry-dead`) queues dead ones again;
- expiry: settled entries (delivered or dead) carry `purge_at`, a TTL index removes them;
- secrets: a value an entry must carry but nobody may read from the database (a reset
  token) is stored sealed, bound to the entry, and opened only to deliver it;
- metrics: entries by channel and status, counted when scraped.
"""

import asyncio
import itertools
import logging
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Protocol

from fastapi import Depends
from pydantic import BaseModel
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from api.config import Settings
from api.core import retry, sealing
from api.core.background import Background
from api.core.metrics import Metrics
from api.core.services import part
from documents import Delivery, OutboxMessage
from documents.base import utcnow

log = logging.getLogger("docstore.outbox")
Entry = dict[str, Any]
PREFETCH = 100  # due entries read at once, to be claimed one by one
HAND_OVER_MOST = 1000  # entries claimed as they are stored, waiting in a worker's memory
SETTLE_MOST = 100  # delivered entries recorded by one update
RENEW_MOST = 500  # waiting entries whose leases one update renews
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


DUPLICATE_KEY = 11000
RETRY_AFTER_MOST_S = 24 * 3600.0  # a destination's Retry-After is honoured up to this


class Failed(Exception):
    """An attempt that failed, with what the channel knows of it: what to record on the
    entry (`record`), when the destination asked to be tried again (`retry_after_s`), and
    whether trying again is pointless (`final`: the entry is dead at once), or the entry
    has nobody left to be kept for (`drop`: removed at once, its destination deleted)."""

    def __init__(
        self,
        message: str,
        *,
        record: Entry | None = None,
        retry_after_s: float | None = None,
        final: bool = False,
        drop: bool = False,
    ) -> None:
        super().__init__(message)
        self.record, self.retry_after_s = record or {}, retry_after_s
        self.final, self.drop = final or drop, drop


class Channel(Protocol):
    """How entries of one kind are delivered."""

    name: str
    max_attempts: int  # then the entry is dead
    backoff_s: float  # the first retry's delay, doubled at each further attempt

    def binding(self, entry: Mapping[str, Any]) -> str:
        """What the entry's sealed secret is bound to (its id and destination:
        pointing a queued entry elsewhere makes its secret unopenable)."""
        ...

    async def deliver(self, entry: Mapping[str, Any], secret: str | None) -> Entry | None:
        """Deliver once (and say what to record of it); raise to have it tried again
        later (`Failed` to say more)."""
        ...

    async def gave_up(self, entry: Mapping[str, Any], error: Exception) -> None:
        """The entry is dead: whatever the channel does about that."""
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


async def forget_item(item_ids: Sequence[Any], session: AsyncClientSession | None = None) -> None:
    """An item deleted for good: entries that carry its content (`carries_item`, with
    its `item_id`: a webhook delivery's payload) lose their `body`. One not yet
    delivered is given up on at its next attempt, and none can be sent again."""
    if item_ids:
        await collection().update_many(
            {"item_id": {"$in": list(item_ids)}, "carries_item": True, "body": {"$type": "string"}},
            {"$set": {"body": None}},
            session=session,
        )


def forget_content(entries: Iterable[Entry], item_ids: Collection[Any]) -> None:
    """`forget_item` for entries in memory (not stored yet, or handed over)."""
    for entry in entries:
        if entry.get("carries_item") and entry.get("item_id") in item_ids:
            entry["body"] = None


def queued_again() -> Entry:
    """The update that makes an entry due now, as if new (not for the TTL index)."""
    return {
        "$set": {"status": Delivery.pending, "attempts": 0, "next_attempt_at": utcnow()},
        "$unset": {"purge_at": ""},
    }


async def retry_dead(channel: str | None = None) -> int:
    """Queue dead entries (of one channel, or all) for delivery again; how many."""
    scope = {} if channel is None else {"channel": channel}
    result = await collection().update_many({"status": Delivery.dead, **scope}, queued_again())
    return result.modified_count


class DurableQueue(Background):
    def __init__(
        self,
        settings: Settings,
        channels: Sequence[Channel],
        sealer: Sealer,
        default: str | None = None,
        per_lane: int = 1,
    ) -> None:
        """`default`: the channel of entries that name none (written before channels,
        perhaps by an older process still running in a rolling deploy). `per_lane`: how
        many entries of one lane this worker delivers at once."""
        super().__init__(f"worker-{secrets.token_hex(4)}")
        self.settings, self.sealer, self.default = settings, sealer, default
        self.per_lane = per_lane
        self.channels = {channel.name: channel for channel in channels}
        self._lanes: Counter[str] = Counter()  # entries being delivered, by lane
        self._tasks: set[asyncio.Task[None]] = set()
        self._candidates: list[Entry] = []  # due entries read, not yet claimed
        self._fetched_at = -math.inf
        self._ready: dict[str, deque[Entry]] = {}  # claimed as stored, by lane, waiting
        self._held: set[Any] = set()  # ids this worker claimed: waiting or under way
        self._in_lane: dict[Any, str] = {}  # the lane of each entry its destination has
        self._delivered: list[tuple[Any, Entry, asyncio.Future[None]]] = []  # to record
        self._recording: asyncio.Task[None] | None = None
        self.working = False  # whether this process's worker runs (then it takes hand-overs)
        self._look = True  # whether to read what is due before the poll interval is up
        self._renewed_at = -math.inf  # when the leases of what waits were last looked at
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
        fields = entry.model_dump(by_alias=True, exclude={"id", "revision_id"})
        await collection().insert_one(self._entry(channel, fields, secret), session=session)

    async def enqueue_once(self, channel: str, entries: Sequence[Entry]) -> int:
        """Store entries whose `_id` their cause decides (an event and its destination);
        one stored already is left as it is. How many were new. While this process's
        worker runs, new entries are stored claimed by it and handed to it at once."""
        if not entries:
            return 0
        documents = [self._entry(channel, dict(entry), None) for entry in entries]
        waiting = sum(len(lane) for lane in self._ready.values())
        handed = documents[: max(0, HAND_OVER_MOST - waiting)] if self.working else []
        now = utcnow()
        for document in handed:
            document.update(self._claiming(now)["$set"], attempts=1)
        try:
            result = await collection().insert_many(documents, ordered=False)
            refused: set[int] = set()
            stored = len(result.inserted_ids)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            refused = {e.get("index") for e in errors}
            stored = len(documents) - len(errors)
        # One stored before is not ours to deliver.
        mine = [document for index, document in enumerate(handed) if index not in refused]
        if not self.working:  # the worker stopped meanwhile: for any worker, now
            await self._give_back([document["_id"] for document in mine])
            mine = []
        for document in mine:
            self._ready.setdefault(_lane(document) or "", deque()).append(document)
            self._held.add(document["_id"])
        if len(mine) < len(documents):
            self.nudge()  # some were stored due, for any worker
        else:
            self.wake.set()
        return stored

    def _entry(self, channel: str, fields: Entry, secret: str | None) -> Entry:
        now = utcnow()
        document = {
            **fields,
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
            "last_attempt_at": None,
            "purge_at": None,
        }
        binding = self.channels[channel].binding(document)
        document["secret"] = self.sealer.seal(secret, binding) if secret is not None else None
        return document

    def nudge(self) -> None:
        """Wake this process's worker: an entry was just committed."""
        self._look = True
        self.wake.set()

    async def run(self) -> None:
        self.working = True
        try:
            while not self.stopping:
                try:
                    await self._renew_waiting()
                    while not self.stopping and await self._start_some():
                        pass
                except PyMongoError as error:  # the database is away: try again later
                    log.warning("queue worker cannot reach the database: %s", error)
                if not self.stopping:  # woken when work is enqueued, or a delivery ends
                    lease_s = self.settings.outbox_lease_s
                    await self.pause(min(self.settings.outbox_poll_s, lease_s / 4))
        finally:  # deliveries under way finish (a lease cut short is claimed again)
            self.working = False
            if self._tasks:
                await asyncio.wait(self._tasks)
            await self._release_ready()

    def _mine(self, ids: Sequence[Any]) -> Entry:
        """The filter of entries (by id) while this worker holds their leases: every
        write about an entry it claimed is conditional on it."""
        return {
            "_id": ids[0] if len(ids) == 1 else {"$in": list(ids)},
            "leased_by": self.name,
            "status": Delivery.sending,
        }

    async def _renew_waiting(self) -> None:
        """Entries handed over keep their leases while they wait behind a slow receiver
        (renewed together once a quarter of a lease has passed): other workers never see
        them due, and they never crowd this worker's reads of what is due, ahead of
        other webhooks' retries. (Their copies here are marked renewed only when all
        were: one another worker took meanwhile is found out as it is taken.)"""
        lease_s = self.settings.outbox_lease_s
        if not self._ready or time.monotonic() - self._renewed_at < lease_s / 8:
            return  # (not a scan of what waits at every wake-up: a few times a quarter)
        self._renewed_at = time.monotonic()
        now = utcnow()
        ageing = now + timedelta(seconds=lease_s * 3 / 4)
        stale = [entry for entry in self._waiting() if entry["lease_until"] < ageing][:RENEW_MOST]
        if not stale:
            return
        lease = now + timedelta(seconds=lease_s)
        renewed = await collection().update_many(
            self._mine([entry["_id"] for entry in stale]), {"$set": {"lease_until": lease}}
        )
        if renewed.modified_count == len(stale):
            for entry in stale:
                entry["lease_until"] = lease

    def _waiting(self) -> Iterator[Entry]:
        """The entries handed over that wait, every lane's."""
        return itertools.chain.from_iterable(self._ready.values())

    async def _release_ready(self) -> None:
        """Entries handed over and not started go back to the queue, due now (a clean
        stop: another worker need not wait for their leases to lapse)."""
        ids = [entry["_id"] for entry in self._waiting()]
        self._ready.clear()
        self._held.difference_update(ids)
        await self._give_back(ids)

    async def _give_back(self, ids: Sequence[Any]) -> None:
        if not ids:
            return
        try:
            await collection().update_many(
                self._mine(ids),
                {
                    "$set": {
                        "status": Delivery.pending,
                        "next_attempt_at": utcnow(),
                        "lease_until": None,
                        "leased_by": None,
                    },
                    "$inc": {"attempts": -1},
                },
            )
        except PyMongoError as error:  # their leases lapse instead
            log.warning("queue worker could not give back %d entries: %s", len(ids), error)

    async def _start_some(self) -> bool:
        """Claim due entries and start delivering them, as many as this worker may
        deliver at once; False when it started none. What is due is read a batch at a
        time (PREFETCH, oldest first, ids and lanes only) and each entry then claimed by
        its id: one query that sorts the due entries serves many deliveries. An entry
        another worker claimed meanwhile is skipped; one of a lane that is full waits."""
        started, fetched = False, False
        while not self.stopping and len(self._tasks) < self.settings.outbox_concurrency:
            handed = await self._next_ready()
            if handed is not None:
                self._start(handed)
                started = True
                continue
            candidate = self._next_candidate()
            if candidate is None:
                # Read again once a round, when work was stored that was not handed over,
                # when the last read found as many as it asked for (more may be due), or
                # a poll interval after the last read (retries come due; with entries
                # left that wait for full lanes, those of other lanes).
                stale = time.monotonic() - self._fetched_at > self.settings.outbox_poll_s
                if fetched or not (self._look or stale):
                    break
                self._look = False
                due = collection().find(self._due(utcnow(), self._full_lanes()))
                found = await due.sort("next_attempt_at", 1).limit(PREFETCH).to_list()
                known = {candidate["_id"] for candidate in self._candidates} | self._held
                self._candidates += [entry for entry in found if entry["_id"] not in known]
                self._fetched_at, fetched = time.monotonic(), True
                # (Or nudged while reading: what was stored then may not have been seen.)
                self._look = self._look or len(found) == PREFETCH
                continue
            if candidate["_id"] in self._held:  # handed over meanwhile: ours already
                continue
            entry = await self._claim_read(candidate)
            if entry is not None:
                self._start(entry)
                started = True
        return started

    async def _next_ready(self) -> Entry | None:
        """An entry handed over, of a lane with room (lanes take turns), as `_still_ours`
        finds it; None when none is left."""
        while True:
            lane = next(
                (
                    lane
                    for lane, waiting in self._ready.items()
                    if waiting and self._has_room(lane or None)
                ),
                None,
            )
            if lane is None:
                return None
            waiting = self._ready.pop(lane)
            entry = waiting.popleft()
            if waiting:
                self._ready[lane] = waiting  # last now: the other lanes' turn first
            try:
                checked = await self._still_ours(entry)
            except BaseException:  # kept, for the next round (or a clean stop's give-back)
                self._ready.setdefault(lane, deque()).appendleft(entry)
                raise
            if checked is not None:
                return checked
            self._held.discard(entry["_id"])

    async def _still_ours(self, entry: Entry) -> Entry | None:
        """A handed-over entry, as it may be delivered now: its lease renewed when more
        than a quarter of it passed while it waited (a delivery starts with most of a
        lease, as a claimed one does); None when another worker took it meanwhile."""
        now = utcnow()
        lease_s = self.settings.outbox_lease_s
        if (entry["lease_until"] - now).total_seconds() > lease_s * 3 / 4:
            return entry
        lease = now + timedelta(seconds=lease_s)
        renewed = await collection().update_one(
            self._mine([entry["_id"]]), {"$set": {"lease_until": lease}}
        )
        return {**entry, "lease_until": lease} if renewed.modified_count == 1 else None

    def forget_waiting(self, item_ids: Collection[Any]) -> None:
        """Items deleted for good: the entries handed over here that carry their content
        lose it too (as `forget_item` removes it from stored ones): given up on, unsent."""
        forget_content(self._waiting(), item_ids)

    def _next_candidate(self) -> Entry | None:
        for position, candidate in enumerate(self._candidates):
            if self._has_room(_lane(candidate)):
                return self._candidates.pop(position)
        return None

    def _has_room(self, lane: str | None) -> bool:
        """Whether a delivery of this lane may start (one of no lane always may)."""
        return lane is None or self._lanes[lane] < self.per_lane

    def _start(self, entry: Entry) -> None:
        lane = _lane(entry)
        if lane is not None:
            self._lanes[lane] += 1
            self._in_lane[entry["_id"]] = lane
        self._held.add(entry["_id"])
        task = asyncio.create_task(self._deliver(entry))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, entry["_id"]))

    def _leave_lane(self, entry_id: Any) -> None:
        """The destination is done with an entry (its outcome may still be recording):
        room in its lane for another."""
        lane = self._in_lane.pop(entry_id, None)
        if lane is not None:
            self._lanes[lane] -= 1
            if self._lanes[lane] <= 0:
                del self._lanes[lane]
            self.wake.set()

    def _finished(self, task: "asyncio.Task[None]", entry_id: Any) -> None:
        self._tasks.discard(task)
        self._held.discard(entry_id)
        self._leave_lane(entry_id)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("queue worker lost a delivery's outcome: %s", error)
        self.wake.set()  # room for another

    async def deliver_one(self) -> bool:
        """Claim and try one due entry, waiting for it; False when none is due."""
        entry = await self._claim()
        if entry is None:
            return False
        await self._deliver(entry)
        return True

    async def _deliver(self, entry: Entry) -> None:
        channel = self.channels[entry.get("channel") or str(self.default)]
        try:
            sealed = entry.get("secret")
            secret = self.sealer.open(sealed, channel.binding(entry)) if sealed else None
            try:
                record = await channel.deliver(entry, secret)
            finally:
                self._leave_lane(entry["_id"])
        except Exception as error:  # any failure is retried later
            await self._failed(entry, channel, error)
        else:
            # What was delivered is kept as the channel says (an email's envelope only).
            await self._record_delivered(
                entry, {**(record or {}), **channel.delivered(entry), "secret": None}
            )

    async def _record_delivered(self, entry: Entry, changes: Entry) -> None:
        """Record a delivery, with the others that ended meanwhile: one update for all
        of them whose `changes` are alike (only while the lease is this worker's)."""
        done = asyncio.get_running_loop().create_future()
        self._delivered.append((entry["_id"], changes, done))
        if self._recording is None or self._recording.done():
            self._recording = asyncio.create_task(self._record_all())
        await done

    async def _record_all(self) -> None:
        while self._delivered:
            batch = self._delivered[:SETTLE_MOST]
            del self._delivered[:SETTLE_MOST]
            alike: dict[str, tuple[Entry, list[tuple[Any, asyncio.Future[None]]]]] = {}
            for entry_id, changes, done in batch:
                key = repr(sorted(changes.items()))
                alike.setdefault(key, (changes, []))[1].append((entry_id, done))
            now = utcnow()
            sent = {"status": Delivery.sent, "sent_at": now, "purge_at": self._purge_at(now)}
            for changes, entries in alike.values():
                try:
                    await collection().update_many(
                        self._mine([entry_id for entry_id, _ in entries]),
                        {"$set": {**sent, **changes, "lease_until": None}},
                    )
                except Exception as error:  # each delivery's task hears of it
                    for _, done in entries:
                        if not done.done():
                            done.set_exception(error)
                else:
                    for _, done in entries:
                        if not done.done():
                            done.set_result(None)

    def _purge_at(self, now: datetime) -> datetime:
        return now + timedelta(days=self.settings.outbox_retention_days)

    def _due(self, now: datetime, full: Sequence[str] = ()) -> Entry:
        """Entries a worker of these channels may claim now (none of the `full` lanes)."""
        return {
            "channel": {"$in": [*self.channels, *([None] if self.default else [])]},
            **({"lane": {"$nin": list(full)}} if full else {}),
            "$nor": _UNCLAIMABLE,
            "$or": [
                {"status": Delivery.pending, "next_attempt_at": {"$lte": now}},
                {"status": Delivery.sending, "lease_until": {"$lt": now}},  # its worker died
            ],
        }

    def _full_lanes(self) -> list[str]:
        return [lane for lane in self._lanes if not self._has_room(lane)]

    def _claiming(self, now: datetime) -> Entry:
        lease = now + timedelta(seconds=self.settings.outbox_lease_s)
        return {
            "$set": {
                "status": Delivery.sending,
                "lease_until": lease,
                "leased_by": self.name,
                "last_attempt_at": now,
            },
            "$inc": {"attempts": 1},
        }

    async def _claim(self) -> Entry | None:
        """Claim the entry due first (one query: `deliver_one`)."""
        now = utcnow()
        claimed: Entry | None = await collection().find_one_and_update(
            self._due(now, self._full_lanes()),
            self._claiming(now),
            sort=[("next_attempt_at", 1)],
            return_document=ReturnDocument.AFTER,
        )
        return claimed

    async def _claim_read(self, candidate: Entry) -> Entry | None:
        """Claim an entry read as due, by its id and the state it was read in (None
        when another worker took it, or it changed since): the entry as claimed. One
        update by id: on the embedded server a findAndModify, or a filter with an
        `$or`, costs a scan of the collection; this, a lookup. (An entry changes only
        by a claim: unchanged since it was read, it is what was read, claimed.)"""
        now = utcnow()
        if candidate.get("status") == Delivery.sending:
            still: Entry = {"status": Delivery.sending, "lease_until": {"$lt": now}}
        else:
            still = {"status": Delivery.pending, "next_attempt_at": {"$lte": now}}
        claimed = await collection().update_one(
            {"_id": candidate["_id"], **still}, self._claiming(now)
        )
        if claimed.modified_count != 1:
            return None
        claiming = self._claiming(now)
        attempts = candidate.get("attempts", 0) + 1
        return {**candidate, **claiming["$set"], "attempts": attempts}

    async def _failed(self, entry: Entry, channel: Channel, error: Exception) -> None:
        what = channel.describe(entry)
        failed = error if isinstance(error, Failed) else Failed(str(error))
        noted = {**failed.record, "last_error": str(error)}
        if failed.drop:  # only while we hold the lease, as `_settle`
            log.warning("dropping %s: %s", what, error)
            await collection().delete_one({"_id": entry["_id"], "leased_by": self.name})
            return
        if failed.final or entry["attempts"] >= channel.max_attempts:
            log.error("giving up on %s: %s", what, error)
            # Its body stays (the secret sealed) for a retry by hand.
            dead = {**noted, "status": Delivery.dead, "purge_at": self._purge_at(utcnow())}
            if await self._settle(entry, dead):
                await channel.gave_up(entry, error)
            return
        wait = retry.delay(entry["attempts"], channel.backoff_s)
        if failed.retry_after_s is not None:  # as the destination asked, within reason
            wait = max(wait, min(failed.retry_after_s, RETRY_AFTER_MOST_S))
        log.warning("sending %s failed (attempt %d): %s", what, entry["attempts"], error)
        retry_at = utcnow() + timedelta(seconds=wait)
        await self._settle(
            entry, {**noted, "status": Delivery.pending, "next_attempt_at": retry_at}
        )

    async def _settle(self, entry: Entry, changes: Entry) -> bool:
        """Record an attempt's outcome; False when the entry is no longer this worker's."""
        # Only while we still hold the lease: if it lapsed, another worker owns the entry.
        result = await collection().update_one(
            self._mine([entry["_id"]]),
            {"$set": {**changes, "lease_until": None}},
        )
        return result.modified_count == 1


def _lane(entry: Mapping[str, Any]) -> str | None:
    lane = entry.get("lane")
    return lane if isinstance(lane, str) else None


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

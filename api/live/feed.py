"""The live feed: one MongoDB change stream per process, fanned out to WebSocket subscribers.

A single watcher task reads the database's change stream (item changes, and account
changes so sockets of a logged-out user can be closed) and offers each change to every
subscriber through a bounded queue. A subscriber that cannot keep up is marked
overflowed instead of growing memory; its connection closes it with 1013.

Resuming: a subscriber that names a position subscribes first, then replays the
stream from that position on its own cursor until it has caught up, and finally reads
its queue, skipping what the replay already delivered (the seam).
"""

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bson import ObjectId
from bson.timestamp import Timestamp
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError
from starlette.requests import HTTPConnection

from api.core.background import Background, uninterrupted
from api.core.metrics import Metrics
from api.core.pagination import CursorCodec
from api.core.retry import Retry
from api.core.services import Services
from api.items import policy
from documents import Item, ItemFields, User
from documents.share import Access

log = logging.getLogger("docstore.live")

HISTORY_LOST = 286  # ChangeStreamHistoryLost: the position left the oplog
WATCH_AWAIT_MS = 500  # longest a getMore waits for changes; bounds how long stop() takes
STEADY_S = 30.0  # a stream open this long failed for a new reason: back off from the start
ITEM_OPERATIONS = {"insert": "created", "update": "updated", "replace": "updated"}
REPLAY_CHECK = 100  # replayed changes judged by one read of what is readable now
# Which of these items the subscriber may read now (one query).
ReadableNow = Callable[[list[ObjectId]], Awaitable[set[ObjectId]]]


def _pipeline(items: str, users: str) -> list[dict[str, Any]]:
    return [
        {
            "$match": {
                "$or": [
                    {
                        "ns.coll": items,
                        "operationType": {"$in": [*ITEM_OPERATIONS, "delete"]},
                    },
                    {"ns.coll": users, "operationType": {"$in": ["update", "replace", "delete"]}},
                ]
            }
        }
    ]


class HistoryLost(Exception):
    """The requested position is older than the server's change history."""


class TooManyReplays(Exception):
    """The account has as many resumes replaying on this process as it may."""


@dataclass
class ReplaySlot:
    """One account's turn to replay missed changes; given back once the replay is done."""

    replays: "Counter[ObjectId]"
    user_id: ObjectId
    held: bool = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.replays[self.user_id] -= 1
            if self.replays[self.user_id] <= 0:
                del self.replays[self.user_id]


@dataclass(frozen=True)
class Position:
    """Where a change sits in the stream: the server's resume token and commit time."""

    token: str
    time: Timestamp

    def encode(self) -> list[Any]:
        return [self.token, self.time]

    @classmethod
    def decode(cls, parts: list[Any]) -> "Position":
        token, time = parts
        if not isinstance(token, str) or not isinstance(time, Timestamp):
            raise ValueError("not a live-feed position")
        return cls(token, time)


# What only says who may see an item: a change of these alone sends nothing to a
# subscriber whose access it leaves as it was.
ACL_FIELDS = frozenset({"readers", "shares", "acl_version"})


@dataclass
class Change:
    """One item change, ready to send to any subscriber. It carries who could see the
    item before and after (from the change's pre- and post-image), so each subscriber's
    event is decided without a database read."""

    event: str  # created | updated | deleted | restored: what the item went through
    item_id: ObjectId
    before: policy.Acl | None  # None: created, or the server kept no pre-image
    after: policy.Acl | None  # None: deleted
    before_tags: frozenset[str]
    after_tags: frozenset[str]
    document: dict[str, Any] | None  # the stored item (None for deleted)
    position: Position
    content_changed: bool = True  # False: only its shares changed
    acl_changed: bool = True  # False: its content alone changed
    _messages: dict[tuple[str, Access | None, tuple[str, ...] | None], str] = field(
        default_factory=dict
    )
    _unrenderable: bool = False

    def mark_unrenderable(self) -> bool:
        """Note that this change cannot be shown; True the first time only."""
        first, self._unrenderable = not self._unrenderable, True
        return first

    def message(self, seen: "Seen", fields: tuple[str, ...] | None, cursors: CursorCodec) -> str:
        """The event as sent, rendered once per kind, access and projection however many
        subscribers receive it."""
        key = (seen.event, seen.access, fields)
        if key not in self._messages:
            event = {
                "event": seen.event,
                "item": self.shown(seen.access, fields),
                "cursor": cursors.encode(self.position.encode()),
            }
            self._messages[key] = json.dumps(event, separators=(",", ":"))
        return self._messages[key]

    def shown(self, access: Access | None, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The item as the REST API shows it to this caller (or only `fields`); its id
        alone when `access` is None (the event shows no content)."""
        if self.document is None or access is None:
            return {"id": str(self.item_id)}
        if fields is None:
            shown: dict[str, Any] = Item.model_validate(
                {**self.document, "access": access}
            ).model_dump(mode="json", by_alias=True)
            return shown
        picked = {k: v for k, v in self.document.items() if k in fields or k == "_id"}
        if "access" in fields:
            picked["access"] = access
        return ItemFields.model_validate(picked).model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True)
class Seen:
    """A change as one subscriber gets it: the event it is to them, and their access."""

    change: Change
    event: str  # created | updated | deleted | restored | shared | unshared
    access: Access | None  # None: the event shows no content (deleted, unshared)


def seen_by(change: Change, scope: policy.Scope, tags: frozenset[str] = frozenset()) -> Seen | None:
    """What a change is to a reader of `scope` who asked for items with `tags`, by its
    access before and after: None when it is to see nothing of it. (The live feed asks
    for each subscriber, the webhooks' dispatcher for each webhook's owner.)"""
    before = scope.access(change.before) if change.before is not None else None
    after = scope.access(change.after) if change.after is not None else None
    if change.event == "deleted" or after is None:
        if before is None or not tags <= change.before_tags:
            return None
        if not change.acl_changed:
            # Its content changed, not who sees it: a post-image read later than the
            # change (the embedded server's) shows a share ended since. Its own event
            # says so; this one shows them nothing.
            return None
        return Seen(change, "deleted" if change.event == "deleted" else "unshared", None)
    if not tags <= change.after_tags:
        return None
    if change.event in ("created", "restored") or change.before is None:  # no pre-image
        return Seen(change, change.event, after)
    if before is None:
        return Seen(change, "shared", after)
    if before == after and not change.content_changed:
        return None  # someone else's share changed: nothing of this one's
    return Seen(change, "updated", after)


def _tags(doc: dict[str, Any]) -> frozenset[str]:
    tags = doc.get("tags", ())
    return (
        frozenset(tag for tag in tags if isinstance(tag, str))
        if isinstance(tags, list)
        else frozenset()
    )


def _acl(doc: dict[str, Any]) -> policy.Acl:
    if doc.get("owner_id") is None:
        raise ValueError("an item without an owner cannot be routed")
    return policy.Acl.of(doc)


def change_of(raw: dict[str, Any]) -> Change | None:
    """The change an item event describes, or None when it cannot be routed (and an
    exception when it names no owner: logged and counted)."""
    operation = raw["operationType"]
    position = Position(raw["_id"]["_data"], raw["clusterTime"])
    before = raw.get("fullDocumentBeforeChange")
    acl_before = _acl(before) if before is not None else None
    tags_before = _tags(before) if before is not None else frozenset()
    if operation == "delete":
        if acl_before is None:  # no pre-image: who could see it is unknown, so nobody may
            log.warning("a deleted item without a pre-image cannot be routed")
            return None
        return Change(
            "deleted", raw["documentKey"]["_id"], acl_before, None, tags_before, frozenset(),
            None, position,
        )  # fmt: skip
    document = raw.get("fullDocument")
    if document is None:  # deleted since (its own event follows)
        return None
    document.pop("search_terms", None)
    content, acl = _changed(raw) if operation == "update" else (True, True)
    event = ITEM_OPERATIONS[operation]
    if operation == "insert" and _restored(document):
        event = "restored"
    return Change(
        event, document["_id"], acl_before, _acl(document),
        tags_before, _tags(document), document, position, content, acl,
    )  # fmt: skip


def _restored(document: Mapping[str, Any]) -> bool:
    """Whether an inserted item came back from the trash (api/items/trash.py marks it)."""
    restored_at = document.get("restored_at")
    return restored_at is not None and restored_at == document.get("updated_at")


def _changed(raw: dict[str, Any]) -> tuple[bool, bool]:
    """Whether an update changed the item's content, and who may see it (both, when
    the event does not say)."""
    description = raw.get("updateDescription")
    if not isinstance(description, dict):
        return True, True
    named = {
        str(name).split(".")[0]
        for name in [*description.get("updatedFields", {}), *description.get("removedFields", [])]
    }
    return bool(named - ACL_FIELDS), bool(named & ACL_FIELDS)


# What ends a subscription besides the client: it fell too far behind, the feed lost its
# place in the stream, or its access token expired.
EndReason = Literal["overflowed", "resync", "expired"]


@dataclass(eq=False)
class Subscriber:
    """One connection's view of the feed: its socket, what it wants, its bounded queue."""

    socket: Any  # closed by the feed when the server shuts down
    user_id: ObjectId
    scope: policy.Scope  # the items it may read (and asked for), as the access policy says
    tags: frozenset[str]
    fields: tuple[str, ...] | None
    queue: asyncio.Queue[Seen]
    account_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Why the connection must end, set once (by the feed, or by its login's expiry): one
    # event to wait on, not a task each, since every idle socket holds what it waits with.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: EndReason | None = None

    def end(self, reason: EndReason) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self.ended.set()

    def sees(self, change: Change) -> Seen | None:
        """What this change is to this subscriber (None: it is to see nothing of it)."""
        return seen_by(change, self.scope, self.tags)

    def offer(self, change: Change) -> None:
        if self.end_reason is not None or (seen := self.sees(change)) is None:
            return
        try:
            self.queue.put_nowait(seen)
        except asyncio.QueueFull:
            self.end("overflowed")  # the connection closes it; nothing more is queued


# Process-global on purpose: the Uvicorn runner closes every socket with 1001 before its
# own shutdown (api/server.py), and it holds no app to ask.
_feeds: "weakref.WeakSet[LiveFeed]" = weakref.WeakSet()


class LiveFeed(Background):
    """This process's change-stream watcher and its subscribers."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        queue_size: int,
        skipped: Callable[[], None] = lambda: None,
        counted: Callable[[float], None] = lambda _: None,
    ) -> None:
        super().__init__("live-feed")
        self.database, self.queue_size = database, queue_size
        self.pipeline = _pipeline(Item.get_collection_name(), User.get_collection_name())
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()  # set once the watcher's stream is open
        self.up = False  # whether the watcher's stream is open now
        # How far the watcher has read: every change after it is still to be offered to
        # the subscribers. Never ahead of the database, so it is a safe place to resume
        # from for anyone who read the database after taking it (X-Feed-Cursor).
        self.position: Position | None = None
        self.skipped = skipped  # counts a change nobody can be shown
        self.counted = counted  # told how many subscribers there are, as that changes
        # Resumes replaying now, per account: a replay reads every account's changes
        # since its cursor (up to LIVE_REPLAY_MAX), so one account may run only a few.
        self.replays: Counter[ObjectId] = Counter()
        _feeds.add(self)

    def replay_slot(self, user_id: ObjectId, most: int) -> ReplaySlot:
        """A turn to replay for `user_id`, or TooManyReplays when it has `most` running.
        Checked and taken with no await between: a burst of resumes cannot all pass."""
        if self.replays[user_id] >= most:
            raise TooManyReplays()
        self.replays[user_id] += 1
        return ReplaySlot(self.replays, user_id)

    async def enable_images(self) -> None:
        """Ask the server to keep pre- and post-images of items (idempotent)."""
        await self.database.command(
            "collMod", Item.get_collection_name(), changeStreamPreAndPostImages={"enabled": True}
        )

    async def stop(self, grace_s: float = 15.0) -> None:
        await self.close_sockets(1001)
        await super().stop(grace_s)

    async def close_sockets(self, code: int) -> None:
        for subscriber in list(self.subscribers):
            with contextlib.suppress(Exception):
                await subscriber.socket.close(code, "server shutting down")

    def subscribe(
        self,
        socket: Any,
        user_id: ObjectId,
        scope: policy.Scope,
        tags: Iterable[str],
        fields: tuple[str, ...] | None,
    ) -> Subscriber:
        subscriber = Subscriber(
            socket, user_id, scope, frozenset(tags), fields, asyncio.Queue(self.queue_size)
        )
        self.subscribers.add(subscriber)
        self.counted(len(self.subscribers))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self.counted(len(self.subscribers))

    async def _open(
        self, after: str | None, max_await_ms: int | None = None
    ) -> AsyncChangeStream[dict[str, Any]]:
        # Post- and pre-images: an update carries the item as it became, a delete the
        # item as it was (its owner routes the event, its tags filter it).
        return await self.database.watch(
            self.pipeline,
            full_document="whenAvailable",
            full_document_before_change="whenAvailable",
            resume_after={"_data": after} if after else None,
            max_await_time_ms=max_await_ms,
        )

    async def run(self) -> None:
        """Read the stream until stopped; reopen it after any error, with backoff. While it
        is not open (`up`), /ready says so and new sockets are asked to come back.

        It reopens where it stood: at the stream's resume token, which advances with every
        reply even when no event passes the filter, so changes written while it was away
        still reach the sockets that stayed connected. The backoff starts again only once
        a stream has stayed open a while: one that fails right after opening is not
        reopened ten times a second."""
        resume: str | None = None
        reopening = Retry(0.1, 5.0, sleep=self.pause)
        async for _ in reopening:
            if self.stopping:
                break
            opened_at = None
            try:
                async with await self._open(resume, max_await_ms=WATCH_AWAIT_MS) as stream:
                    self._advance(stream.resume_token, None)
                    self.ready.set()
                    self.up = True
                    opened_at = time.monotonic()
                    # try_next, not `async for`: between getMores the loop sees `stopping`.
                    while not self.stopping and stream.alive:
                        raw = await stream.try_next()
                        token = stream.resume_token or (raw["_id"] if raw is not None else None)
                        self._advance(token, raw)
                        if token is not None:
                            resume = token["_data"]
                        if raw is not None:
                            self._dispatch(raw)
            except OperationFailure as error:
                if error.code == HISTORY_LOST:  # we were away too long: everyone refetches
                    log.error("live feed lost its place in the change stream; resync")
                    resume = None
                    for subscriber in self.subscribers:
                        subscriber.end("resync")
                else:
                    log.warning("live feed stream failed: %s", error)
            except PyMongoError as error:
                log.warning("live feed stream failed: %s", error)
            except Exception:  # a bug must not end the feed for every socket, silently
                log.exception("live feed watcher failed; restarting it")
            self.up = False
            if opened_at is not None and time.monotonic() - opened_at > STEADY_S:
                reopening.reset()

    def _advance(self, token: Mapping[str, Any] | None, raw: Mapping[str, Any] | None) -> None:
        """Move `position` to where the stream stands (its resume token, and the commit
        time of the last change read: never later than the token's own)."""
        if token is None:
            return
        seen = raw["clusterTime"] if raw is not None else None
        if seen is None:
            seen = self.position.time if self.position is not None else Timestamp(0, 0)
        self.position = Position(token["_data"], seen)

    def _dispatch(self, raw: dict[str, Any]) -> None:
        try:
            self._route(raw)
        except Exception:
            # A document another tool wrote (no owner_id, say): skipped, not fatal.
            key = raw.get("documentKey", {}).get("_id")
            log.warning("live feed skipped a change it cannot route: _id %r", key, exc_info=True)
            self.skipped()

    def _route(self, raw: dict[str, Any]) -> None:
        if raw["ns"]["coll"] == User.get_collection_name():
            user_id = raw["documentKey"]["_id"]
            for subscriber in self.subscribers:
                if subscriber.user_id == user_id:
                    subscriber.account_changed.set()
            return
        change = change_of(raw)
        if change is None:
            return
        for subscriber in self.subscribers:
            subscriber.offer(change)

    async def changes(
        self,
        subscriber: Subscriber,
        resume_after: Position | None,
        replay_max: int,
        slot: ReplaySlot | None = None,
        readable_now: ReadableNow | None = None,
    ) -> AsyncIterator[Seen]:
        """The subscriber's changes: replayed from `resume_after` first (`slot`, its turn
        to replay, is given back once it is done), then live. A replayed change shows an
        item's content only if `readable_now` says the subscriber may still read it: a
        replay never hands over what access since taken away would refuse."""
        replayed: set[str] = set()
        try:
            if resume_after is not None:
                async for seen in self._replayed(
                    subscriber, resume_after, replay_max, readable_now
                ):
                    replayed.add(seen.change.position.token)
                    yield seen
        finally:
            if slot is not None:
                slot.release()
        while True:
            seen = await subscriber.queue.get()
            position = seen.change.position
            # The seam: the queue may repeat what the replay sent, or (when this process's
            # watcher runs behind another's) hold changes from before the resume point,
            # which are no later than it. A transaction's changes share one cluster time
            # and become visible together: those after the resume point were replayed.
            # Compared with the resume point's own time, not the last replayed change's:
            # a commit that becomes visible after the replay ended may carry an earlier
            # time than changes it read (the embedded server stamps a transaction's time
            # before it takes its place in the stream), and must still come.
            if resume_after is not None and (
                position.token in replayed or position.time <= resume_after.time
            ):
                continue
            yield seen

    async def _replayed(
        self,
        subscriber: Subscriber,
        start: Position,
        limit: int,
        readable_now: ReadableNow | None,
    ) -> AsyncIterator[Seen]:
        """What the subscriber missed since `start`, judged by access at each change and
        then, for the content it shows, now (one read per REPLAY_CHECK changes)."""
        held: list[Seen] = []
        async for change in self._replay(start, limit):
            seen = subscriber.sees(change)
            if seen is None:
                continue
            held.append(seen)
            if len(held) >= REPLAY_CHECK:
                for kept in await _still_readable(held, readable_now):
                    yield kept
                held = []
        for kept in await _still_readable(held, readable_now):
            yield kept

    async def _replay(self, start: Position, limit: int) -> AsyncIterator[Change]:
        try:
            opening = self._open(start.token, max_await_ms=100)
            stream = await uninterrupted(opening, abandoned=lambda opened: opened.close())
            async with stream:
                count = 0
                while (raw := await uninterrupted(stream.try_next())) is not None:
                    count += 1
                    if count > limit:
                        raise HistoryLost()  # too far behind to replay: refetch instead
                    if raw["ns"]["coll"] == User.get_collection_name():
                        continue
                    try:
                        change = change_of(raw)
                    except Exception:  # as in _dispatch
                        key = raw.get("documentKey", {}).get("_id")
                        log.warning("live feed replay skipped a change: _id %r", key)
                        self.skipped()
                        continue
                    if change is not None:
                        yield change
        except OperationFailure as error:
            if error.code == HISTORY_LOST:
                raise HistoryLost() from None
            raise


async def _still_readable(held: list[Seen], readable_now: ReadableNow | None) -> list[Seen]:
    """`held` without the events that show content of an item no longer readable."""
    showing = list({seen.change.item_id for seen in held if seen.access is not None})
    if readable_now is None or not showing:
        return held
    readable = await uninterrupted(readable_now(showing))
    return [seen for seen in held if seen.access is None or seen.change.item_id in readable]


async def close_all(code: int = 1001) -> None:
    """Close every live socket of this process (graceful shutdown, before the server's own)."""
    for feed in list(_feeds):
        await feed.close_sockets(code)


def feed_of(connection: HTTPConnection) -> LiveFeed | None:
    """The feed the app's lifespan opened; None when it has none (off, or no change streams)."""
    return running_feed(connection.app)


def running_feed(app: Any) -> LiveFeed | None:
    """As `feed_of`, and None too before the lifespan has run (middleware, scrapes)."""
    services: Services | None = getattr(app.state, "services", None)
    return services.find(LiveFeed) if services is not None else None


def instrument(metrics: Metrics) -> Callable[[float], None]:
    """`docstore_live_subscribers`: open subscriptions, set as they open and close (each
    worker's own, added up across workers), zero until then. Its setter, for the feed."""
    gauge = metrics.gauge(
        "docstore_live_subscribers", "Open WebSocket subscriptions to live changes", mode="livesum"
    )
    gauge.set(0)
    return gauge.set

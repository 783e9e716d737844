"""The dispatcher: item changes, read from the change stream, become webhook deliveries.

The source is the database's own record of changes, so every change counts whoever
made it (REST, batches, restores, the admin scripts). Exactly one process dispatches at
a time: it holds a lease in the database (`webhook_dispatch`), renewed as it saves its
position in the stream; a process that dies stops renewing it and another takes over
from the saved position once it lapses.

Exactly once: each event's delivery to each webhook is stored under an id made of the
event's resume token and the webhook's id (`delivery_id`), and the position is saved
only after an event's deliveries are stored. A process killed in between leaves a
position before that event: whoever dispatches next reads it again and stores nothing
new for it. So a restart neither skips an event nor enqueues one twice; two processes
that briefly both think they hold the lease cannot duplicate a delivery either.

Who gets what: a webhook's owner gets an event for each change of an item they could
read at the time of the change (its pre- and post-image say who could: the live feed's
`seen_by`), as the live feed would send it to them: created, updated, deleted,
restored, shared, unshared. The webhooks themselves are kept in memory and read again
after the stream shows a change of webhooks or accounts (in stream order, so a webhook
made before a change gets it), so an item change costs no read unless it has a
webhook to go to.
"""

import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from api.config import Settings
from api.core.background import Background
from api.core.metrics import Metrics
from api.core.queue import DurableQueue, Entry, forget_content, forget_item
from api.core.retry import Retry
from api.items import policy
from api.live.feed import HISTORY_LOST, Change, change_of, seen_by
from api.webhooks.channel import NAME, delivery
from documents import Item, User, Webhook
from documents.base import utcnow

log = logging.getLogger("docstore.webhooks")
LEASES = "webhook_dispatch"
KEY = "items"  # the one lease: of the items collection's stream
WATCH_AWAIT_MS = 500  # longest a getMore waits; bounds how long stop() takes
SAVE_EVERY_S = 1.0  # the position is saved at most this often while changes come
STORE_MOST = 500  # deliveries stored by one insert


def delivery_id(event: str, webhook_id: Any) -> str:
    """The id of an event's delivery to a webhook: the same whoever computes it, when."""
    digest = hashlib.sha256(f"{event}\n{webhook_id}".encode()).digest()
    return "msg_" + base64.b32encode(digest).decode()[:26].lower()


def new_delivery_id() -> str:
    """The id of a delivery no change caused (a ping)."""
    return delivery_id(secrets.token_hex(16), "")


def payload(kind: str, timestamp: str, data: Mapping[str, Any]) -> str:
    return json.dumps({"type": kind, "timestamp": timestamp, "data": data}, separators=(",", ":"))


@dataclass(frozen=True)
class Hook:
    id: ObjectId
    owner_id: ObjectId
    events: frozenset[str]


class Dispatcher(Background):
    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        queue: DurableQueue,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        super().__init__(f"webhook-dispatcher-{secrets.token_hex(4)}")
        self.database, self.queue, self.settings, self.metrics = database, queue, settings, metrics
        self.leases = database[LEASES]
        self.items = Item.get_collection_name()
        self.pipeline = [
            {
                "$match": {
                    "$or": [
                        {
                            "ns.coll": self.items,
                            "operationType": {"$in": ["insert", "update", "replace", "delete"]},
                        },
                        {"ns.coll": Webhook.get_collection_name()},
                        # Accounts: deleted, replaced, or (de)activated; not every login.
                        {
                            "ns.coll": User.get_collection_name(),
                            "$or": [
                                {"operationType": {"$in": ["delete", "replace"]}},
                                {"updateDescription.updatedFields.is_active": {"$exists": True}},
                            ],
                        },
                    ]
                }
            }
        ]
        self.position: str | None = None  # the last event handled (in memory)
        self.hooks: dict[ObjectId, list[Hook]] | None = None  # by owner; None: read again
        self.holding = False  # whether this process dispatches now

    async def run(self) -> None:
        reopening = Retry(0.1, 5.0, sleep=self.pause)
        try:
            async for _ in reopening:
                if self.stopping:
                    break
                try:
                    start = await self._take_lease()
                    if start is False:  # another process dispatches: wait for its lease
                        reopening.reset()
                        await self.pause(self.settings.webhook_lease_s / 3)
                        continue
                    await self._follow(start if isinstance(start, str) else None)
                    reopening.reset()
                except OperationFailure as error:
                    if error.code == HISTORY_LOST:
                        log.error(
                            "webhook dispatcher lost its place in the change stream: the "
                            "changes since it are not delivered; going on from now"
                        )
                        self.position = None
                        await self.leases.update_one({"_id": KEY}, {"$unset": {"resume_token": ""}})
                    else:
                        log.warning("webhook dispatcher stream failed: %s", error)
                except PyMongoError as error:
                    log.warning("webhook dispatcher stream failed: %s", error)
                except Exception:  # a bug must not end dispatching, silently
                    log.exception("webhook dispatcher failed; restarting it")
        finally:
            await self._release()

    async def _take_lease(self) -> str | bool | None:
        """The position to start from once the lease is ours (None: from now), or False
        while another process holds it."""
        now = utcnow()
        try:
            held = await self.leases.find_one_and_update(
                {
                    "_id": KEY,
                    "$or": [
                        {"holder": self.name},
                        {"holder": None},
                        {"lease_until": {"$lt": now}},
                    ],
                },
                {"$set": {"holder": self.name, "lease_until": self._lease_end()}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # it exists, and is someone else's
            self.holding = False
            return False
        if not self.holding:
            log.info("webhook dispatcher %s holds the lease", self.name)
        self.holding = True
        saved = held.get("resume_token") if held else None
        # A lease record removed meanwhile (a database emptied) forgot the position:
        # this process still knows where it was.
        return saved if isinstance(saved, str) else self.position

    def _lease_end(self) -> Any:
        return utcnow() + timedelta(seconds=self.settings.webhook_lease_s)

    async def _save(self, position: str | None) -> bool:
        """Save the position and renew the lease; False when the lease is not ours."""
        changes: dict[str, Any] = {"lease_until": self._lease_end()}
        if position is not None:
            changes["resume_token"] = position
        saved = await self.leases.update_one({"_id": KEY, "holder": self.name}, {"$set": changes})
        if saved.matched_count != 1:
            log.warning("webhook dispatcher %s lost its lease", self.name)
            self.holding = False
            return False
        return True

    async def _release(self) -> None:
        """Let another process take over at once (a clean stop)."""
        if self.holding:
            try:
                await self.leases.update_one(
                    {"_id": KEY, "holder": self.name},
                    {"$set": {"holder": None, "lease_until": utcnow()}},
                )
            except PyMongoError as error:
                log.warning("webhook dispatcher could not give up its lease: %s", error)
            self.holding = False

    async def _follow(self, start: str | None) -> None:
        """Dispatch from `start` while the lease stays ours."""
        self.hooks = None
        async with await self.database.watch(
            self.pipeline,
            full_document="whenAvailable",
            full_document_before_change="whenAvailable",
            resume_after={"_data": start} if start else None,
            max_await_time_ms=WATCH_AWAIT_MS,
        ) as stream:
            if start is None and stream.resume_token is not None:
                self.position = stream.resume_token["_data"]
            if not await self._save(self.position):
                return
            saved, saved_at = self.position, time.monotonic()
            renew_every = self.settings.webhook_lease_s / 3
            unstored: list[Entry] = []  # deliveries of the events read, not yet stored
            deleted: list[Any] = []  # items those events deleted for good
            read_to = self.position  # the last event read (`position`: the last stored)
            while not self.stopping and stream.alive:
                raw = await stream.try_next()
                if raw is not None:
                    unstored += await self._handle(raw)
                    if (item_id := _deleted_item(raw, self.items)) is not None:
                        deleted.append(item_id)
                token = stream.resume_token or (raw["_id"] if raw is not None else None)
                if token is not None:
                    read_to = token["_data"]
                # Stored a batch at a time: when the events the stream holds are handled
                # (the next read asks the server). Only then is the position theirs.
                full = len(unstored) + len(deleted) >= STORE_MOST
                if (unstored or deleted) and (full or not _buffered(stream)):
                    await self._store(unstored, deleted)
                    unstored, deleted = [], []
                if not unstored and not deleted:
                    self.position = read_to
                since = time.monotonic() - saved_at
                if (self.position != saved and since > SAVE_EVERY_S) or since > renew_every:
                    if not await self._save(self.position):
                        return
                    saved, saved_at = self.position, time.monotonic()
            if unstored or deleted:
                await self._store(unstored, deleted)
                self.position = read_to
            if self.position != saved:
                await self._save(self.position)

    async def _store(self, entries: list[Entry], deleted: list[Any]) -> None:
        """Store deliveries. The content of items deleted for good leaves them first,
        then those waiting in this process, then those stored before (the deleting
        request removed it from those stored by then, not from those a dispatcher
        running behind stored after)."""
        if deleted:
            gone = set(deleted)
            forget_content(entries, gone)
            self.queue.forget_waiting(gone)
        await self.queue.enqueue_once(NAME, entries)
        if deleted:
            await forget_item(deleted)

    async def _handle(self, raw: dict[str, Any]) -> list[Entry]:
        """The deliveries of one event."""
        if raw["ns"]["coll"] != self.items:
            self.hooks = None  # a webhook or an account changed: read them again
            return []
        try:
            change = change_of(raw)
        except Exception:  # a document another tool wrote (no owner, say)
            log.warning("webhook dispatcher skipped a change it cannot route", exc_info=True)
            self.metrics.skipped("webhooks")
            return []
        if change is None:
            return []
        hooks = await self._hooks()
        readers = _readers(change)
        entries = []
        for owner_id in readers & hooks.keys():
            seen = seen_by(change, policy.Scope(owner_id))
            if seen is None:
                continue
            kind = f"item.{seen.event}"
            takers = [hook for hook in hooks[owner_id] if kind in hook.events]
            if not takers:
                continue
            try:
                body = payload(kind, _timestamp(change), {"item": change.shown(seen.access)})
            except (ValidationError, PydanticSerializationError, ValueError):
                log.warning("webhook dispatcher cannot show item %s: skipped", change.item_id)
                self.metrics.skipped("webhooks")
                continue
            for hook in takers:
                key = delivery_id(change.position.token, hook.id)
                entries.append(delivery(hook.id, owner_id, kind, body, key, change.item_id))
        return entries

    async def _hooks(self) -> dict[ObjectId, list[Hook]]:
        """The enabled webhooks of active accounts, by owner."""
        if self.hooks is None:
            found: dict[ObjectId, list[Hook]] = {}
            stored = Webhook.get_pymongo_collection().find(
                {"enabled": True}, projection={"owner_id": 1, "events": 1}
            )
            async for doc in stored:
                owner, events = doc.get("owner_id"), doc.get("events")
                if isinstance(owner, ObjectId) and isinstance(events, list):
                    hook = Hook(
                        doc["_id"], owner, frozenset(e for e in events if isinstance(e, str))
                    )
                    found.setdefault(owner, []).append(hook)
            active = User.get_pymongo_collection().find(
                {"_id": {"$in": list(found)}, "is_active": True}, projection={"_id": 1}
            )
            keep = {doc["_id"] async for doc in active} if found else set()
            self.hooks = {owner: hooks for owner, hooks in found.items() if owner in keep}
        return self.hooks


def _deleted_item(raw: Mapping[str, Any], items: str) -> Any:
    """The id of the item an event deleted for good, or None."""
    if raw.get("operationType") != "delete" or raw.get("ns", {}).get("coll") != items:
        return None
    return raw.get("documentKey", {}).get("_id")


def _buffered(stream: Any) -> int:
    """How many events the stream has read and not yet given out (0 when PyMongo's
    cursor does not say: then each event's deliveries are stored on their own)."""
    waiting = getattr(getattr(stream, "_cursor", None), "_data", None)
    return len(waiting) if waiting is not None else 0


def _readers(change: Change) -> set[Any]:
    """Everyone who could read the item before or after the change."""
    found: set[Any] = set()
    for acl in (change.before, change.after):
        if acl is not None:
            found.add(acl.owner_id)
            found.update(acl.roles)
    return found


def _timestamp(change: Change) -> str:
    """When the change was committed (the server's clock), as ISO 8601 UTC."""
    moment = change.position.time.as_datetime()
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

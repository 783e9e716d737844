"""Webhook deliveries, as a channel of the durable queue (api/core/queue.py).

An entry is one event for one webhook: its `_id` is the `webhook-id` header of every
attempt, decided by the event and the webhook (api/webhooks/dispatcher.py), and its body
the payload, rendered once when the change was read. Each attempt takes the webhook
(its URL, whether it is on, its secrets) as read at most HOOK_FRESH_S ago (a change made
through this process is seen at once, one made through another within that time),
signs the body with every secret in use and POSTs it (api/webhooks/transport.py).
A 2xx delivers it; `410 Gone` disables the webhook; anything else is tried again with
backoff, later when the receiver's Retry-After asks; WEBHOOK_DISABLE_AFTER deliveries in
a row given up on disable it too. A disabled webhook's owner is emailed. The queue's
lanes are webhooks: one slow receiver holds at most WEBHOOK_MAX_IN_FLIGHT of a worker's
deliveries.

Delivered entries keep their body until they expire (OUTBOX_RETENTION_DAYS), so any
delivery can be sent again by hand; deleting an item for good removes its content from
them (`queue.forget_item`).
"""

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from bson import ObjectId
from fastapi import Depends
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from api.config import Settings
from api.core import queue
from api.core.metrics import Metrics
from api.core.queue import DurableQueue, Entry, Failed
from api.core.services import part
from api.mail import messages
from api.mail.channel import NAME as EMAIL
from api.webhooks import signing
from api.webhooks.transport import Outcome, Transport
from documents import User, Webhook
from documents.base import utcnow

log = logging.getLogger("docstore.webhooks")
NAME = "webhook"
HOOK_FRESH_S = 1.0  # a webhook read serves this process's deliveries to it this long
HOOKS_KEPT = 10_000  # webhooks whose last read is kept
GONE = "the receiver answered 410 Gone"
ID_ONLY = frozenset({"item.deleted", "item.unshared"})  # events whose item is its id alone


def delivery(
    hook_id: Any, owner_id: Any, kind: str, body: str, key: str, item_id: Any = None
) -> Entry:
    """A delivery as the queue stores it (see api/webhooks/channel.py)."""
    return {
        "_id": key,
        "message_id": key,
        "webhook_id": hook_id,
        "owner_id": owner_id,
        "lane": str(hook_id),
        "type": kind,
        "item_id": item_id,
        # Deleting the item for good removes the body (api/core/queue.py: forget_item).
        "carries_item": item_id is not None and kind not in ID_ONLY,
        "body": body,
        "response_status": None,
    }


def outcome_kind(outcome: Outcome) -> str:
    if outcome.delivered:
        return "delivered"
    if outcome.gone:
        return "gone"
    if outcome.refused:
        return "refused"
    return "rejected" if outcome.status is not None else "unreachable"


class WebhookChannel:
    name = NAME

    def __init__(self, transport: Transport, settings: Settings, metrics: Metrics) -> None:
        self.transport, self.settings = transport, settings
        self.max_attempts = settings.webhook_max_attempts
        self.backoff_s = settings.webhook_backoff_s
        self.secret_keys = [settings.signing_secret, *settings.previous_secret_keys]
        self.queue: DurableQueue | None = None  # set once the queue exists: it emails owners
        self._read: dict[Any, tuple[float, dict[str, Any] | None]] = {}  # id: (when, webhook)
        self._forgotten: dict[Any, float] = {}  # webhook or owner id: when it changed here
        self.attempts = metrics.counter(
            "docstore_webhook_attempts",
            "Webhook delivery attempts by outcome "
            "(delivered, rejected, gone, unreachable, refused, skipped)",
            ["outcome"],
        )

    def binding(self, entry: Mapping[str, Any]) -> str:
        return str(entry["_id"])

    async def webhook(self, webhook_id: Any) -> dict[str, Any] | None:
        """The webhook as read at most HOOK_FRESH_S ago (None: it does not exist)."""
        read = self._read.get(webhook_id)
        if read is not None and time.monotonic() - read[0] < HOOK_FRESH_S:
            return read[1]
        hook = await Webhook.get_pymongo_collection().find_one({"_id": webhook_id})
        now = time.monotonic()
        self._forgotten = {
            key: at for key, at in self._forgotten.items() if now - at < HOOK_FRESH_S
        }
        # Not kept within HOOK_FRESH_S of a change made here: the read may have begun
        # before the change, or the change not be committed yet (an account deletion).
        owner = hook.get("owner_id") if hook is not None else None
        if not isinstance(owner, ObjectId):  # another tool's: no key (a list is unhashable)
            owner = None
        if webhook_id not in self._forgotten and owner not in self._forgotten:
            if len(self._read) >= HOOKS_KEPT:
                self._read.clear()
            self._read[webhook_id] = (now, hook)
        return hook

    def forget(self, webhook_id: Any = None, owner_id: Any = None) -> None:
        """A webhook (or all of an owner's) changed: deliveries read it again, for
        HOOK_FRESH_S each time (see `webhook`)."""
        now = time.monotonic()
        for key in (webhook_id, owner_id):
            if key is not None:
                self._forgotten[key] = now
        self._read.pop(webhook_id, None)
        if owner_id is not None:
            for known, (_, hook) in list(self._read.items()):
                if hook is None or hook.get("owner_id") == owner_id:
                    self._read.pop(known, None)

    async def remove_webhooks_of(
        self, user_id: ObjectId, session: AsyncClientSession | None
    ) -> None:
        """An account's webhooks and their deliveries go with the account."""
        await remove_webhooks_of(user_id, session)
        self.forget(owner_id=user_id)

    async def deliver(self, entry: Mapping[str, Any], secret: str | None) -> Entry | None:
        hooks = Webhook.get_pymongo_collection()
        hook = await self.webhook(entry.get("webhook_id"))
        if hook is None:  # its webhook (or its account) was deleted: nothing is kept
            self.attempts.labels("skipped").inc()
            raise Failed("the webhook was deleted", drop=True)
        why_not = _undeliverable(hook, entry)
        if why_not is not None:
            self.attempts.labels("skipped").inc()
            raise Failed(why_not, final=True)
        assert hook is not None
        in_use = self.secrets_in_use(hook)
        if not in_use:
            self.attempts.labels("skipped").inc()
            raise Failed("no secret of the webhook opens (SECRET_KEY changed?)", final=True)
        body = str(entry["body"]).encode()
        headers = signing.headers(in_use, str(entry["_id"]), int(time.time()), body)
        outcome = await self.transport.post(str(hook["url"]), body, headers)
        self.attempts.labels(outcome_kind(outcome)).inc()
        record = {"response_status": outcome.status}
        if outcome.delivered:
            if hook.get("failures_in_row"):
                hook["failures_in_row"] = 0  # the copy read: not reset once per delivery
                await hooks.update_one({"_id": hook["_id"]}, {"$set": {"failures_in_row": 0}})
            return record
        if outcome.gone:
            await self.disable(hook["_id"], GONE)
            raise Failed(GONE, record=record, final=True)
        error = outcome.error or f"the receiver answered {outcome.status}"
        raise Failed(error, record=record, retry_after_s=outcome.retry_after_s)

    def secrets_in_use(self, hook: Mapping[str, Any]) -> list[str]:
        """The webhook's secrets that sign now, newest first."""
        now, found = utcnow(), []
        stored = hook.get("secrets")
        for entry in stored if isinstance(stored, list) else ():
            if not isinstance(entry, dict) or not isinstance(entry.get("sealed"), str):
                continue
            if retired(entry, now):
                continue
            opened = signing.opened(entry["sealed"], self.secret_keys, str(hook["_id"]))
            if opened is not None:
                found.append(opened)
        return found

    async def gave_up(self, entry: Mapping[str, Any], error: Exception) -> None:
        """A delivery given up on after its last attempt counts towards disabling its
        webhook (one refused for the webhook's own state does not)."""
        if isinstance(error, Failed) and error.final:
            return
        counted = await Webhook.get_pymongo_collection().find_one_and_update(
            {"_id": entry.get("webhook_id"), "enabled": True},
            {"$inc": {"failures_in_row": 1}},
            return_document=ReturnDocument.AFTER,
        )
        self.forget(entry.get("webhook_id"))
        most = self.settings.webhook_disable_after
        if counted is not None and counted.get("failures_in_row", 0) >= most:
            await self.disable(counted["_id"], f"{most} deliveries in a row were given up on")

    async def disable(self, webhook_id: ObjectId, reason: str) -> None:
        """Turn the webhook off and email its owner (once: only the call that turns it off)."""
        hook = await Webhook.get_pymongo_collection().find_one_and_update(
            {"_id": webhook_id, "enabled": True},
            {"$set": {"enabled": False, "disabled_reason": reason, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        self.forget(webhook_id)  # (a read under way then is not kept either)
        if hook is None:
            return
        log.warning("webhook %s disabled: %s", webhook_id, reason)
        owner = await User.find_one({"_id": hook["owner_id"]})
        if owner is None or self.queue is None:
            return
        message = messages.webhook_disabled(owner, hook["url"], reason, self.settings.public_url)
        await self.queue.enqueue(EMAIL, message)
        self.queue.nudge()

    def delivered(self, entry: Mapping[str, Any]) -> Entry:
        return {}  # the body stays, for a delivery sent again by hand

    def describe(self, entry: Mapping[str, Any]) -> str:
        return f"{entry.get('_id')} to webhook {entry.get('webhook_id')}"


def _undeliverable(hook: Mapping[str, Any], entry: Mapping[str, Any]) -> str | None:
    if hook.get("enabled") is not True:
        return "the webhook is disabled"
    if not isinstance(entry.get("body"), str):
        return "its payload was removed: the item was deleted for good"
    if not isinstance(hook.get("url"), str):
        return "the webhook has no URL"
    return None


Channel = Annotated[WebhookChannel, Depends(part(WebhookChannel))]


def retired(secret: Mapping[str, Any], now: datetime) -> bool:
    """Whether a stored secret signs no more (one whose `retires_at` is not a time,
    written by another tool, counts as retired)."""
    retires_at = secret.get("retires_at")
    return retires_at is not None and (not isinstance(retires_at, datetime) or retires_at <= now)


async def remove_webhooks_of(user_id: ObjectId, session: AsyncClientSession | None) -> None:
    """An account's webhooks and their deliveries go with the account."""
    await queue.collection().delete_many({"channel": NAME, "owner_id": user_id}, session=session)
    await Webhook.get_pymongo_collection().delete_many({"owner_id": user_id}, session=session)

"""The security log: what happened to an account, written along with what it records.

Each event is one small document (`security_events`), removed by a TTL index after
AUDIT_RETENTION_DAYS. Nothing secret goes in: no password, hash, token or link; the
client's address and user agent as the request carried them, capped in length.

Where a change runs in a transaction (password and email changes) its entry is part of
it. Where the change has already happened when its entry is written (a token issued, a
login ended), the entry is best-effort: a database gone by then costs the entry (a
warning in the server's log), not an answer to a change that was made.

The entries of refused sign-ins are written once the answer is sent: an unknown
account writes none, and its 401 or 429 must not come back sooner than a known one's.

A flood cannot grow it without bound: a wrong password is logged only when the
throttle counted it (so at most LOGIN_MAX_FAILURES_PER_ACCOUNT per window), and a
throttled sign-in, or a refused one with the right password (a deactivated account),
once per account, kind and throttle window, under an id derived from them: a second
insert of it is a duplicate, not a new entry.
"""

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId
from fastapi import Request
from pymongo import InsertOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, PyMongoError

from api.accounts.deps import client_address
from api.config import Settings
from api.core.pagination import ListParams, Page, fetch_page, showable, sound_keys
from api.core.services import Services
from documents import SecurityEvent, SecurityEventPublic
from documents.base import utcnow
from documents.security_event import CLIENT_IP_MAX, USER_AGENT_MAX, EventType

log = logging.getLogger("docstore.accounts")
NEWEST_FIRST = [("at", -1), ("_id", -1)]  # served by the (user_id, at, _id) index


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as the log keeps it."""

    client_ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, request: Request) -> "Origin":
        address, agent = client_address(request), request.headers.get("user-agent")
        return cls((address or "")[:CLIENT_IP_MAX] or None, (agent or "")[:USER_AGENT_MAX] or None)


def _event(
    user_id: Any,
    kind: EventType,
    origin: Origin,
    settings: Settings,
    detail: Mapping[str, Any] | None,
    event_id: ObjectId | None = None,
) -> dict[str, Any]:
    at = utcnow()
    return {
        "_id": event_id or ObjectId(),
        "user_id": user_id,
        "type": kind,
        "at": at,
        "client_ip": origin.client_ip,
        "user_agent": origin.user_agent,
        "detail": dict(detail or {}),
        "expires_at": at + timedelta(days=settings.audit_retention_days),
    }


def written(
    user_id: Any,
    kind: EventType,
    origin: Origin,
    settings: Settings,
    detail: Mapping[str, Any] | None = None,
) -> InsertOne[Any]:
    """The event as a write to send along with others (`write_together`)."""
    namespace = SecurityEvent.get_pymongo_collection().full_name
    return InsertOne(_event(user_id, kind, origin, settings, detail), namespace=namespace)


async def record(
    user_id: Any,
    kind: EventType,
    origin: Origin,
    settings: Settings,
    detail: Mapping[str, Any] | None = None,
    session: AsyncClientSession | None = None,
) -> None:
    """Log the event now (in `session`'s transaction, when given one)."""
    events = SecurityEvent.get_pymongo_collection()
    await events.insert_one(_event(user_id, kind, origin, settings, detail), session=session)


async def noted(
    user_id: Any,
    kind: EventType,
    origin: Origin,
    settings: Settings,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """`record`, best-effort: for a change made already (the entry cannot undo it), or
    run once a refused sign-in's answer is sent. A database gone by then costs the entry
    (logged here), not an answer."""
    try:
        await record(user_id, kind, origin, settings, detail)
    except PyMongoError as error:
        log.warning("security log lost a %s entry: %s", kind, error)


async def once_per_window(
    user_id: Any,
    kind: EventType,
    origin: Origin,
    settings: Settings,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Log `kind` for the account at most once per throttle window (LOGIN_FAILURE_WINDOW_S
    from the epoch on), however many requests ask. Run once the answer is sent."""
    window_s = settings.login_failure_window_s
    started = int(utcnow().timestamp()) // window_s * window_s
    reason = dict(detail or {}).get("reason", "")
    seed = hashlib.sha256(f"{user_id}:{kind}:{reason}:{started}".encode()).digest()
    event_id = ObjectId(started.to_bytes(4, "big") + seed[:8])
    event = _event(user_id, kind, origin, settings, detail, event_id)
    try:
        await SecurityEvent.get_pymongo_collection().insert_one(event)
    except DuplicateKeyError:
        pass  # logged already in this window
    except PyMongoError as error:
        log.warning("security log lost a %s entry: %s", kind, error)


async def remove_events_of(user_id: ObjectId, session: AsyncClientSession | None) -> None:
    """An account's log goes with the account."""
    await SecurityEvent.get_pymongo_collection().delete_many({"user_id": user_id}, session=session)


async def page_of(user_id: Any, page: ListParams, services: Services) -> Page[SecurityEventPublic]:
    """One page of an account's log, newest first. An entry another tool wrote that is
    not a valid event is skipped (logged and counted), not the whole page."""
    events = SecurityEvent.get_pymongo_collection()
    sound = {"user_id": user_id, **sound_keys("at")}
    rows, next_cursor, total = await fetch_page(events, sound, NEWEST_FIRST, page, services.cursors)

    def skipped(row: dict[str, Any]) -> None:
        log.warning("security log skipped entry %r it cannot show", row.get("_id"))
        services.metrics.skipped("security_events")

    shown = showable(rows, SecurityEventPublic, skipped)
    return Page[SecurityEventPublic](items=shown, next_cursor=next_cursor, total=total)

"""`WS /api/v1/ws/items`: the caller's item changes, live and resumable.

Every refusal happens after the handshake, as a close code with a reason a client
can act on: 1008 for the client's own mistakes (token, parameters, permissions),
1011 when the database has no change streams, 1013 for a consumer too slow to keep
up, 1001 when the server shuts down. See /asyncapi.json for the messages.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pymongo.errors import PyMongoError

from api.accounts import personal_tokens
from api.accounts.deps import Login, authenticate, token_signer
from api.accounts.tokens import TokenSigner
from api.core.background import uninterrupted
from api.core.errors import DomainError, Forbidden, NotAuthenticated
from api.core.pagination import InvalidCursor
from api.core.services import Services, get_services
from api.items import policy
from api.items.query import InvalidQuery, parse_fields
from api.live.feed import (
    HistoryLost,
    LiveFeed,
    Position,
    ReadableNow,
    ReplaySlot,
    Subscriber,
    TooManyReplays,
    feed_of,
)
from documents import Item, User
from documents.item import tag_key

log = logging.getLogger("docstore.live")
router = APIRouter(tags=["live"])

POLICY, UNAVAILABLE, TRY_AGAIN_LATER, NORMAL = 1008, 1011, 1013, 1000
WATCH_SCOPES = ["items:read"]  # what a personal access token needs to watch
# The first message carries a token (a few hundred characters); nothing a client sends
# later is read. Uvicorn closes with 1009 a socket whose message exceeds MESSAGE_MAX
# before holding it (api.server), instead of buffering up to its default 16 MiB.
AUTH_MESSAGE_MAX = 4096
MESSAGE_MAX_BYTES = 16 * 1024
# URLs end up in logs (the server's, proxies'): a token valid until revoked must not.
URL_TOKEN = (
    "send a personal access token in the Authorization header or the first message, "
    "never in the URL"
)


@dataclass
class Ending:
    """How a connection ends: a close code and reason, maybe one last message first."""

    code: int | None  # None: the client already went away
    reason: str = ""
    message: dict[str, Any] | None = None


class Refused(Exception):
    def __init__(self, reason: str, code: int = POLICY) -> None:
        super().__init__(reason)
        self.ending = Ending(code, reason)


@dataclass
class Request:
    login: Login
    owner_id: ObjectId | None  # the owner asked for, if one was
    scope: policy.Scope
    tags: list[str]
    fields: tuple[str, ...] | None
    resume_after: Position | None


class UpgradeRequired(DomainError):
    status, code, title = 426, "upgrade-required", "Upgrade required"
    detail = "This is a WebSocket endpoint: connect with ws:// or wss:// (Upgrade: websocket)."
    headers = {"Upgrade": "websocket"}  # noqa: RUF012 - RFC 9110 15.5.22


@router.get("/ws/items", include_in_schema=False)  # documented with the socket (asyncapi.py)
async def items_over_plain_http() -> None:
    """The socket's address asked for as plain HTTP: a 426 that says how to connect."""
    raise UpgradeRequired()


@router.websocket("/ws/items")
async def live_items(websocket: WebSocket) -> None:
    services = get_services(websocket)
    await websocket.accept()
    try:
        feed = feed_of(websocket)
        if feed is None:
            if not services.settings.live_feed:
                raise Refused("live changes are turned off on this server", UNAVAILABLE)
            raise Refused("live changes need MongoDB change streams (a replica set)", UNAVAILABLE)
        if not feed.up:  # its watcher is restarting: come back in a moment
            raise Refused("the live feed is restarting; reconnect shortly", TRY_AGAIN_LATER)
        request = await _read_request(websocket, services, token_signer(websocket))
        user_id = request.login.user.id
        assert user_id is not None
        slot = None
        if request.resume_after is not None:
            slot = feed.replay_slot(user_id, services.settings.live_replays_per_user)
    except TooManyReplays:
        await _end(websocket, _TOO_MANY_REPLAYS)
        return
    except Refused as refused:
        await _end(websocket, refused.ending)
        return
    with contextlib.ExitStack() as held:  # undone in reverse, each even if one fails
        if slot is not None:  # given back once the replay is over, or never started
            held.callback(slot.release)
        subscriber = feed.subscribe(websocket, user_id, request.scope, request.tags, request.fields)
        held.callback(feed.unsubscribe, subscriber)
        if request.login.expires_at is not None:  # a timer, not a task: idle sockets are many
            delay = max(0.0, request.login.expires_at - time.time())
            expiry = asyncio.get_running_loop().call_later(delay, subscriber.end, "expired")
            held.callback(expiry.cancel)
        # From here on the watcher offers this socket every change it reads: say so, so a
        # client knows when what it writes next is sure to arrive.
        # Every change after this position arrives on this socket: the client's own
        # resume_after (as it sent it), or where the feed stands now.
        subscribed: dict[str, Any] = {"event": "subscribed"}
        if "resume_after" in websocket.query_params:
            subscribed["cursor"] = websocket.query_params["resume_after"]
        elif feed.position is not None:
            subscribed["cursor"] = services.feed_cursors.encode(feed.position.encode())
        try:
            await websocket.send_text(json.dumps(subscribed))
        except Exception:  # the client went away already
            return
        ending = await _first_of(
            _send_changes(
                websocket,
                services,
                feed,
                subscriber,
                request.login.acting_user,
                request.resume_after,
                slot,
            ),
            _receive_until_gone(websocket),
            _account_watch(subscriber, request),
            _ended(subscriber),
        )
    await _end(websocket, ending)


async def _read_request(websocket: WebSocket, services: Services, signer: TokenSigner) -> Request:
    params = websocket.query_params
    if personal_tokens.looks_personal(params.get("token", "")):
        raise Refused(URL_TOKEN)
    scheme, _, bearer = websocket.headers.get("authorization", "").partition(" ")
    header_token = bearer.strip() if scheme.lower() == "bearer" else ""
    token = (
        params.get("token")
        or header_token
        or await _auth_message(websocket, services.settings.live_auth_timeout_s)
    )
    try:
        login = await authenticate(token, signer)
    except NotAuthenticated as error:
        raise Refused(error.detail) from None
    except PyMongoError:
        raise Refused(_DATABASE_AWAY.reason, TRY_AGAIN_LATER) from None
    if login.missing_scopes(WATCH_SCOPES):
        raise Refused("this access token lacks the scope items:read")
    user = login.acting_user
    owner_id = None
    if "owner_id" in params:
        try:
            owner_id = ObjectId(params["owner_id"])
        except (InvalidId, TypeError):
            raise Refused("owner_id must be a 24-character hexadecimal id") from None
    scope = _scope(user, owner_id)
    try:
        fields = tuple(parse_fields(params["fields"])) if "fields" in params else None
    except InvalidQuery as error:
        raise Refused(str(error)) from None
    resume_after = None
    if "resume_after" in params:
        try:
            resume_after = Position.decode(services.feed_cursors.decode(params["resume_after"]))
        except (InvalidCursor, ValueError):
            raise Refused("resume_after is not a cursor this feed issued") from None
    tags = [tag_key(tag) for tag in params.getlist("tag")]
    return Request(login, owner_id, scope, tags, fields, resume_after)


def _scope(user: User, owner_id: ObjectId | None) -> policy.Scope:
    try:
        return policy.readable(user, owner_id, doing="watch")
    except Forbidden as refused:  # said as a close reason: no capital, no full stop
        detail = refused.detail.rstrip(".")
        raise Refused(detail[:1].lower() + detail[1:]) from None


async def _auth_message(websocket: WebSocket, timeout_s: float) -> str:
    """The token from a first `{"type": "auth", "token": ...}` message."""
    try:
        text = await asyncio.wait_for(websocket.receive_text(), timeout_s)
        if len(text) > AUTH_MESSAGE_MAX:
            raise Refused(f"the first message may be at most {AUTH_MESSAGE_MAX} characters")
        message = json.loads(text)
    except TimeoutError:
        raise Refused(f"send a token within {timeout_s:g} s") from None
    except (ValueError, KeyError, RuntimeError, WebSocketDisconnect):  # RecursionError too
        raise Refused('the first message must be {"type": "auth", "token": "..."}') from None
    token = message.get("token") if isinstance(message, dict) else None
    if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(token, str):
        raise Refused('the first message must be {"type": "auth", "token": "..."}')
    return token


async def _first_of(*jobs: Awaitable[Ending]) -> Ending:
    """Run the connection's jobs until one says how it ends; cancel the rest."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finished = next(iter(done))
    try:
        return finished.result()
    except Exception:  # the socket failed under us (the client vanished mid-send)
        return Ending(None)


def _readable_now(user: User) -> ReadableNow:
    """For a replay: which of these items `user` may read now, as the access policy says."""

    async def readable(item_ids: list[ObjectId]) -> set[ObjectId]:
        found = Item.get_pymongo_collection().find(policy.among(item_ids), policy.ACL_FIELDS)
        return policy.readable_of(user, await found.to_list())

    return readable


async def _send_changes(
    websocket: WebSocket,
    services: Services,
    feed: LiveFeed,
    subscriber: Subscriber,
    user: User,
    resume_after: Position | None,
    slot: ReplaySlot | None,
) -> Ending:
    replay_max = services.settings.live_replay_max
    readable_now = _readable_now(user)
    try:
        async for seen in feed.changes(subscriber, resume_after, replay_max, slot, readable_now):
            change = seen.change
            try:
                message = change.message(seen, subscriber.fields, services.feed_cursors)
            except Exception:  # a stored item the API cannot show: this event is skipped
                if change.mark_unrenderable():  # logged and counted once, not per socket
                    log.warning("live feed skipped item %s it cannot render", change.item_id)
                    feed.skipped()
                continue
            await websocket.send_text(message)
    except HistoryLost:
        return _RESYNC
    except PyMongoError:
        return _DATABASE_AWAY
    return Ending(NORMAL)  # pragma: no cover - the live part never ends by itself


_RESYNC = Ending(NORMAL, "resync: refetch by REST", {"event": "resync"})
_TOO_MANY_REPLAYS = Ending(
    TRY_AGAIN_LATER, "too many resumes at once for this account; reconnect shortly"
)
_DATABASE_AWAY = Ending(TRY_AGAIN_LATER, "the database is unavailable; reconnect with resume_after")


async def _receive_until_gone(websocket: WebSocket) -> Ending:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return Ending(None)


async def _account_watch(subscriber: Subscriber, request: Request) -> Ending:
    """Re-check the account whenever it changes: logout, password change, deactivation."""
    while True:
        await subscriber.account_changed.wait()
        subscriber.account_changed.clear()
        try:
            user = await uninterrupted(User.find_one({"_id": request.login.user.id}))
        except PyMongoError:
            return _DATABASE_AWAY
        if user is None or not request.login.still_valid(user):
            return Ending(POLICY, "access token revoked")
        if not _still_allowed(replace(request.login, user=user).acting_user, request):
            return Ending(POLICY, "no longer allowed to watch these items")


def _still_allowed(user: User, request: Request) -> bool:
    """Whether the access policy still lets `user` read all the subscription was given
    (a promotion keeps it; losing superuser powers over others' items ends it)."""
    return policy.readable(user).covers(request.scope)


async def _ended(subscriber: Subscriber) -> Ending:
    """The end the feed or the login's expiry set for this subscription."""
    await subscriber.ended.wait()
    if subscriber.end_reason == "resync":
        return _RESYNC
    if subscriber.end_reason == "expired":
        return Ending(POLICY, "access token expired: reconnect with a fresh one and resume_after")
    unread = subscriber.queue.maxsize
    return Ending(TRY_AGAIN_LATER, f"too slow: more than {unread} changes unread")


async def _end(websocket: WebSocket, ending: Ending) -> None:
    if ending.code is None:
        return
    with contextlib.suppress(Exception):  # the client may be gone already
        if ending.message is not None:
            await websocket.send_text(json.dumps(ending.message))
        await websocket.close(ending.code, ending.reason)

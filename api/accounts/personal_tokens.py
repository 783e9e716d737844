"""Personal access tokens: issue, find by the token a program sends, revoke.

A token is `dsk_<id>_<secret>`: the id finds the document in one indexed lookup, and
the secret is compared with the stored SHA-256 in constant time. The user document
lists the live tokens (`access_token_ids`), so revoking one, logout-all and
deactivation (which bumps `token_version`) end them the way they end sessions, and
a live WebSocket notices through the user document it already watches.

No FastAPI here: the dependencies (deps.py) and the routes (token_routes.py) use it.
"""

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from bson import ObjectId

from api.accounts.passwords import digest
from api.core.errors import Conflict, DomainError, NotAuthenticated
from documents import AccessToken, AccessTokenCreate, User
from documents.access_token import MAX_ACCESS_TOKENS, SCOPES
from documents.base import utcnow

ACCESS_TOKEN_SCHEME = "AccessToken"
PREFIX = "dsk_"
_SHAPE = re.compile(r"dsk_([0-9a-f]{24})_([A-Za-z0-9_-]{43})")
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at: at most one write a minute


class InvalidAccessToken(NotAuthenticated):
    code, title = "invalid-access-token", "Invalid access token"
    detail = "The access token is invalid, expired or revoked."


class TooManyTokens(Conflict):
    code, title = "too-many-tokens", "Too many tokens"
    detail = f"An account holds at most {MAX_ACCESS_TOKENS} access tokens: revoke one first."


def looks_personal(token: str) -> bool:
    return token.startswith(PREFIX)


async def issue(
    user: User, session_id: ObjectId, body: AccessTokenCreate
) -> tuple[AccessToken, str]:
    """A new token for `user`, made from the login `session_id`, and the one text that
    ever shows its secret."""
    secret, now = secrets.token_urlsafe(32), utcnow()
    expires_at = now + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    token = AccessToken(
        user_id=user.id,
        name=body.name,
        scopes=body.scopes,
        secret_hash=digest(secret),
        token_version=user.token_version,
        created_at=now,
        expires_at=expires_at,
    )
    await token.insert()
    listed = await _listed(user, session_id, token.id)
    if listed is not True:
        await AccessToken.get_pymongo_collection().delete_one({"_id": token.id})
        raise listed
    return token, f"{PREFIX}{token.id}_{secret}"


async def _listed(
    user: User, session_id: ObjectId, token_id: ObjectId | None
) -> Literal[True] | DomainError:
    """Add the token to the user's live ones, in one update that also checks the limit
    (so a burst of creations cannot pass it) and that the login making it is still
    live (so a logout-all meanwhile cannot miss it). Ids whose token has expired are
    dropped, and the update tried once more, before the limit is the answer."""
    users = User.get_pymongo_collection()
    for _ in range(2):
        added = await users.update_one(
            {
                "_id": user.id,
                "session_ids": session_id,
                f"access_token_ids.{MAX_ACCESS_TOKENS - 1}": {"$exists": False},
            },
            {"$push": {"access_token_ids": token_id}},
        )
        if added.modified_count:
            return True
        if not await users.count_documents({"_id": user.id, "session_ids": session_id}):
            return NotAuthenticated("This login has ended; sign in again.")
        live = await AccessToken.get_pymongo_collection().distinct(
            "_id", {"user_id": user.id, "_id": {"$ne": token_id}}
        )
        await users.update_one({"_id": user.id}, {"$pull": {"access_token_ids": {"$nin": live}}})
    return TooManyTokens()


@dataclass(frozen=True)
class Grant:
    """What a stored token grants, read on every request it makes: only the fields
    checked, their types checked by hand (a Beanie document costs more to build than
    the lookup that found it)."""

    id: ObjectId
    user_id: ObjectId
    scopes: frozenset[str]
    token_version: int
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, stored: dict[str, Any]) -> "Grant":
        grant = cls(
            stored["_id"],
            stored.get("user_id"),  # type: ignore[arg-type]
            frozenset(stored.get("scopes") or ()),
            stored.get("token_version"),  # type: ignore[arg-type]
            stored.get("expires_at"),
            stored.get("last_used_at"),
        )
        times = (grant.expires_at, grant.last_used_at)
        well_formed = (
            isinstance(grant.user_id, ObjectId)
            and type(grant.token_version) is int
            and all(time is None or isinstance(time, datetime) for time in times)
            and grant.scopes <= SCOPES.keys()
        )
        if not well_formed:
            raise ValueError("not an access token this API wrote")
        return grant


async def find(token: str) -> Grant:
    """What the stored token this text names grants, if its secret matches and it has
    not expired."""
    shape = _SHAPE.fullmatch(token)
    if shape is None:
        raise InvalidAccessToken()
    stored = await AccessToken.get_pymongo_collection().find_one({"_id": ObjectId(shape[1])})
    if stored is None or not hmac.compare_digest(str(stored.get("secret_hash")), digest(shape[2])):
        raise InvalidAccessToken()
    try:
        grant = Grant.of(stored)
    except (ValueError, TypeError):  # written by another tool: honoured by nobody
        raise InvalidAccessToken() from None
    if grant.expires_at is not None and grant.expires_at <= utcnow():
        raise InvalidAccessToken()  # the TTL monitor removes it within a minute
    return grant


async def touch(token: Grant) -> None:
    """Record use at most once a minute: of concurrent requests, one writes."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < TOUCH_EVERY:
        return
    await AccessToken.get_pymongo_collection().update_one(
        {"_id": token.id, "last_used_at": token.last_used_at}, {"$set": {"last_used_at": now}}
    )


async def revoke(user: User, token_id: ObjectId) -> bool:
    """End one of the user's tokens at once; False when they hold no such token."""
    deleted = await AccessToken.get_pymongo_collection().delete_one(
        {"_id": token_id, "user_id": user.id}
    )
    await User.get_pymongo_collection().update_one(
        {"_id": user.id}, {"$pull": {"access_token_ids": token_id}}
    )
    return bool(deleted.deleted_count)

"""Sessions: opening one at login, rotating its refresh token, ending one or all.

A refresh token is `<session id>.<secret>`; only a hash of the secret is stored.
Refreshing swaps the hash in one atomic update, so of two concurrent refreshes
exactly one rotates. Presenting the spent secret again within the grace window
returns the same new token (its response may have been lost); later, it is
reuse (RFC 9700: a leaked token) and ends the session for everyone holding it.
An access token names its session, and the user document lists the live ones,
so checking a token costs no lookup beyond the user the request loads anyway.
"""

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from beanie import PydanticObjectId
from bson import ObjectId
from bson.errors import InvalidId
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo import ReturnDocument

from api.accounts.passwords import digest
from api.config import Settings
from api.core.errors import NotAuthenticated
from documents import Session, User
from documents.base import utcnow
from documents.user import MAX_SESSIONS


class InvalidRefreshToken(NotAuthenticated):
    code, title = "invalid-refresh-token", "Invalid refresh token"
    detail = "The refresh token is invalid, expired or already used; log in again."


@dataclass
class Opened:
    session: Session
    refresh_token: str


def _replay_key(secret: str) -> bytes:
    return hashlib.sha256(b"refresh-replay:" + secret.encode()).digest()


def _seal(new_secret: str, old_secret: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_replay_key(old_secret)).encrypt(nonce, new_secret.encode(), None)
    return base64.b64encode(nonce + sealed).decode()


def _unseal(replay: str, old_secret: str) -> str | None:
    raw = base64.b64decode(replay)
    try:
        return AESGCM(_replay_key(old_secret)).decrypt(raw[:12], raw[12:], None).decode()
    except InvalidTag:
        return None


async def open_session(
    user: User, settings: Settings, user_agent: str | None, client: str | None
) -> Opened:
    secret, now = secrets.token_urlsafe(32), utcnow()
    session = Session(
        user_id=user.id,
        refresh_hash=digest(secret),
        user_agent=(user_agent or "")[:300] or None,
        client=client,
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(days=settings.refresh_token_expire_days),
    )
    await session.insert()
    await User.get_pymongo_collection().update_one(
        {"_id": user.id},
        {"$push": {"session_ids": {"$each": [session.id], "$slice": -MAX_SESSIONS}}},
    )
    return Opened(session, f"{session.id}.{secret}")


async def rotate(refresh_token: str, settings: Settings) -> Opened:
    """The session and its next refresh token, or 401 (and on reuse, the session ends)."""
    session_id, secret = _parse(refresh_token)
    now, new_secret = utcnow(), secrets.token_urlsafe(32)
    sessions = Session.get_pymongo_collection()
    rotated = await sessions.find_one_and_update(
        {
            "_id": session_id,
            "refresh_hash": digest(secret),
            "revoked_at": None,
            "expires_at": {"$gt": now},
        },
        {
            "$set": {
                "refresh_hash": digest(new_secret),
                "previous_hash": digest(secret),
                "replay": _seal(new_secret, secret),
                "rotated_at": now,
                "last_used_at": now,
            }
        },
        return_document=ReturnDocument.AFTER,
    )
    if rotated is not None:
        return Opened(Session.model_validate(rotated), f"{session_id}.{new_secret}")
    spent = await sessions.find_one({"_id": session_id, "previous_hash": digest(secret)})
    if spent is None or spent["revoked_at"] is not None:
        raise InvalidRefreshToken()
    # Measured from now, not from before the update: a concurrent refresh may have rotated
    # after this request began, and that must not count as "within the grace window".
    elapsed = utcnow() - spent["rotated_at"]
    within_grace = elapsed < timedelta(seconds=settings.refresh_reuse_grace_s)
    replayed = _unseal(spent["replay"], secret) if spent.get("replay") else None
    if replayed is not None and within_grace:
        return Opened(Session.model_validate(spent), f"{session_id}.{replayed}")
    await end_sessions(spent["user_id"], [session_id])  # reuse: someone else has it too
    raise InvalidRefreshToken()


def _parse(refresh_token: str) -> tuple[ObjectId, str]:
    session_id, _, secret = refresh_token.partition(".")
    try:
        return ObjectId(session_id), secret
    except (InvalidId, TypeError):
        raise InvalidRefreshToken() from None


async def end_sessions(
    user_id: PydanticObjectId | ObjectId | None, session_ids: list[ObjectId] | None = None
) -> None:
    """End these sessions of the user (all of them when `session_ids` is None)."""
    which: dict[str, object] = {"user_id": user_id, "revoked_at": None}
    if session_ids is not None:
        which["_id"] = {"$in": session_ids}
    await Session.get_pymongo_collection().update_many(which, {"$set": {"revoked_at": utcnow()}})
    pull: dict[str, Any] = (
        {"$set": {"session_ids": []}}
        if session_ids is None
        else {"$pull": {"session_ids": {"$in": session_ids}}}
    )
    await User.get_pymongo_collection().update_one({"_id": user_id}, pull)

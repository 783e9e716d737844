"""Sessions: opening one at login, rotating its refresh token, ending one or all.

A refresh token is `<session id>.<family>.<secret>`; only hashes are stored. The
family is fixed at login and carried by every token of that login; the secret
changes on each refresh, swapped in one atomic update, so of two concurrent
refreshes exactly one rotates. Presenting the spent secret again within the grace
window, while its successor has never been used, returns that same successor (its
response may have been lost). Any other token of the family that is not the
current one is reuse (RFC 9700: a leaked token): the session ends for everyone
holding it, however old the token. (Tokens from before families, `<session
id>.<secret>`, are recognised as reuse only while they are the latest spent one.)
An access token names its session, and the user document lists the live ones,
so checking a token costs no lookup beyond the user the request loads anyway.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from beanie import PydanticObjectId
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import InsertOne, ReturnDocument, UpdateOne

from api.accounts.passwords import digest
from api.config import Settings
from api.core import sealing
from api.core.errors import NotAuthenticated
from api.core.together import Write, write_together
from documents import AccessToken, Session, User
from documents.base import utcnow
from documents.user import MAX_SESSIONS


class InvalidRefreshToken(NotAuthenticated):
    code, title = "invalid-refresh-token", "Invalid refresh token"
    detail = "The refresh token is invalid, expired or already used; log in again."


class RefreshReused(InvalidRefreshToken):
    """A spent refresh token came back: the same 401, and its login has been ended."""

    def __init__(self, user_id: ObjectId, session_id: ObjectId) -> None:
        super().__init__()
        self.user_id, self.session_id = user_id, session_id


@dataclass
class Opened:
    session: Session
    refresh_token: str


def _seal(new_secret: str, old_secret: str) -> str:
    return sealing.seal(sealing.key("refresh-replay", old_secret), new_secret)


def _unseal(replay: str, old_secret: str) -> str | None:
    return sealing.unseal([sealing.key("refresh-replay", old_secret)], replay)


async def open_session(
    user: User,
    settings: Settings,
    user_agent: str | None,
    client: str | None,
    first: Sequence[Write] = (),
    then: Sequence[Write] = (),
    session_id: ObjectId | None = None,
) -> Opened:
    """A new login of `user` (`session_id`, when the caller named it first), listed on
    the user document so its tokens are honoured: one round trip, carrying `first` (the
    sign-in's own writes, which settle its attempt) ahead of the session's, and `then`
    (its log entry) after: stopped part way, the attempt is settled, and nothing is
    logged of a login that did not open."""
    family, secret, now = secrets.token_urlsafe(16), secrets.token_urlsafe(32), utcnow()
    doc = {
        "_id": session_id or ObjectId(),
        "user_id": user.id,
        "refresh_hash": digest(secret),
        "previous_hash": None,
        "family_hash": digest(family),
        "replay": None,
        "rotated_at": None,
        "user_agent": (user_agent or "")[:300] or None,
        "client": client,
        "created_at": now,
        "last_used_at": now,
        "expires_at": now + timedelta(days=settings.refresh_token_expire_days),
        "revoked_at": None,
    }
    session = Session.model_validate(doc)  # what the database will hold, checked first
    sessions, users = Session.get_pymongo_collection(), User.get_pymongo_collection()
    listed = {"$push": {"session_ids": {"$each": [doc["_id"]], "$slice": -MAX_SESSIONS}}}
    # The session before the list that honours it: stopped between the two, a login
    # leaves a session nobody can use, never a listed one that does not exist.
    writes = [
        *first,
        InsertOne(doc, namespace=sessions.full_name),
        UpdateOne({"_id": user.id}, listed, namespace=users.full_name),
        *then,
    ]
    await write_together(sessions.database.client, writes)
    return Opened(session, _token(session.id, family, secret))


def _token(session_id: ObjectId | None, family: str | None, secret: str) -> str:
    return f"{session_id}.{family}.{secret}" if family else f"{session_id}.{secret}"


async def rotate(refresh_token: str, settings: Settings) -> Opened:
    """The session and its next refresh token, or 401 (and on reuse, the session ends)."""
    session_id, family, secret = _parse(refresh_token)
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
        return Opened(Session.model_validate(rotated), _token(session_id, family, new_secret))
    spent = await sessions.find_one({"_id": session_id})
    if spent is None or spent["revoked_at"] is not None or spent["expires_at"] <= now:
        raise InvalidRefreshToken()
    latest_spent = spent.get("previous_hash") == digest(secret)
    if family is not None:
        if spent.get("family_hash") != digest(family):
            raise InvalidRefreshToken()  # not a token of this login: nothing to revoke
    elif not latest_spent:
        raise InvalidRefreshToken()  # an old-style token we cannot place in the chain
    if latest_spent:  # its successor is the current token: never used yet
        # Measured from now, not from before the update: a concurrent refresh may have
        # rotated after this request began, which must not count as "within the grace".
        elapsed = utcnow() - spent["rotated_at"]
        within_grace = elapsed < timedelta(seconds=settings.refresh_reuse_grace_s)
        replayed = _unseal(spent["replay"], secret) if spent.get("replay") else None
        if replayed is not None and within_grace:
            return Opened(Session.model_validate(spent), _token(session_id, family, replayed))
    # Reuse: someone else has it too. Said once, by the request that ended the login.
    if await end_sessions(spent["user_id"], [session_id]):
        raise RefreshReused(spent["user_id"], session_id)
    raise InvalidRefreshToken()


def _parse(refresh_token: str) -> tuple[ObjectId, str | None, str]:
    """Session id, family (None for tokens from before families), secret."""
    parts = refresh_token.split(".")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidRefreshToken()
    try:
        session_id = ObjectId(parts[0])
    except (InvalidId, TypeError):
        raise InvalidRefreshToken() from None
    family = parts[1] if len(parts) == 3 else None
    return session_id, family, parts[-1]


async def end_sessions(
    user_id: PydanticObjectId | ObjectId | None, session_ids: list[ObjectId] | None = None
) -> int:
    """End these sessions of the user (all of them, and every personal access token,
    when `session_ids` is None): how many were live and are ended now, by this call."""
    which: dict[str, object] = {"user_id": user_id, "revoked_at": None}
    if session_ids is not None:
        which["_id"] = {"$in": session_ids}
    ended = await Session.get_pymongo_collection().update_many(
        which, {"$set": {"revoked_at": utcnow()}}
    )
    if session_ids is None:  # every login: personal access tokens too
        await User.get_pymongo_collection().update_one(
            {"_id": user_id}, {"$set": {"session_ids": [], "access_token_ids": []}}
        )
        await AccessToken.get_pymongo_collection().delete_many({"user_id": user_id})
        return ended.modified_count
    await User.get_pymongo_collection().update_one(
        {"_id": user_id}, {"$pull": {"session_ids": {"$in": session_ids}}}
    )
    return ended.modified_count

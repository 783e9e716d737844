"""Issuing and consuming the single-use tokens sent by email (stored only as hashes)."""

import secrets
from datetime import timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from api.accounts.passwords import digest
from api.core.errors import DomainError
from documents import ActionToken, Purpose, User
from documents.base import utcnow


class InvalidActionToken(DomainError):
    code, title = "invalid-token", "Invalid token"
    detail = "The token is invalid, expired or already used; ask for a new one."


async def issue(
    user: User, purpose: Purpose, lifetime: timedelta, session: AsyncClientSession | None
) -> str:
    token = secrets.token_urlsafe(32)
    record = ActionToken(
        user_id=user.id,
        purpose=purpose,
        token_hash=digest(token),
        email=user.email,
        expires_at=utcnow() + lifetime,
    )
    await record.insert(session=session)
    return token


def _live(token: str, purpose: Purpose) -> dict[str, object]:
    return {
        "token_hash": digest(token),
        "purpose": purpose,
        "used_at": None,
        "expires_at": {"$gt": utcnow()},
    }


async def is_live(token: str, purpose: Purpose) -> bool:
    """Whether the token could be consumed now (one indexed read, nothing spent): asked
    before anything costly is done for it."""
    found = await ActionToken.get_pymongo_collection().find_one(_live(token, purpose), {"_id": 1})
    return found is not None


async def consume(token: str, purpose: Purpose) -> ActionToken:
    """Mark the token used (once, atomically) and return it; 400 when it cannot be."""
    used = await ActionToken.get_pymongo_collection().find_one_and_update(
        _live(token, purpose),
        {"$set": {"used_at": utcnow()}},
        return_document=ReturnDocument.AFTER,
    )
    if used is None:
        raise InvalidActionToken()
    record: ActionToken = ActionToken.model_validate(used)
    return record


async def void(
    user_id: object, purposes: list[Purpose], session: AsyncClientSession | None = None
) -> None:
    """Spend every unused token of `purposes` the account holds: they were mailed to an
    address the account may no longer trust, or one of them just did its job."""
    await ActionToken.get_pymongo_collection().update_many(
        {"user_id": user_id, "purpose": {"$in": purposes}, "used_at": None},
        {"$set": {"used_at": utcnow()}},
        session=session,
    )

"""`create-superuser`: a new superuser account, or (only when asked) an existing one promoted.

While sign-up is open anyone can register an address before the admin does. Promoting
whoever holds it, as this command once did unasked, handed that person a superuser
account that logs in with *their* password while the admin's never worked. So an
existing account is promoted only with `--promote`, and the result names whose it is.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from api.accounts.passwords import hash_password
from api.config import Settings
from api.core.database import connect
from documents import User, UserCreate
from documents.base import utcnow
from documents.user import CASE_INSENSITIVE

# Asks for a missing value on the terminal: (what, hidden) -> the answer.
Ask = Callable[[str, bool], str]


@dataclass
class Outcome:
    message: str
    code: int = 0  # the exit status: 1 refused (nothing changed), 2 invalid input


def problems(email: str, username: str | None, password: str | None) -> list[str]:
    """What the API's own sign-up model says is wrong with the values given (values not
    given yet are asked for later, and checked then)."""
    given = {"email": email, "username": username, "password": password}
    try:
        UserCreate.model_validate(
            {name: value for name, value in given.items() if value is not None}
        )
    except ValidationError as error:
        return [
            f"{'.'.join(map(str, issue['loc']))}: {issue['msg']}"
            for issue in error.errors()
            if issue["type"] != "missing"
        ]
    return []


async def create_superuser(
    settings: Settings,
    email: str,
    username: str | None,
    password: str | None,
    promote: bool,
    ask: Ask,
) -> Outcome:
    async with connect(settings):
        holder = await _account(email)
        if holder is not None:
            return await _existing(holder, password, promote)
        name = username or await asyncio.to_thread(ask, "Username", False)
        secret = password or await asyncio.to_thread(ask, "Password", True)
        if found := problems(email, name, secret):
            return Outcome("; ".join(found), 2)
        body = UserCreate.model_validate(
            {"email": email, "username": name, "password": secret, "is_superuser": True}
        )
        hashed = await hash_password(body.password, settings.bcrypt_rounds)
        user = User(**body.model_dump(exclude={"password"}), hashed_password=hashed)
        try:
            await user.insert()
        except DuplicateKeyError:  # registered meanwhile, or the username is someone's
            holder = await _account(email)
            if holder is not None:
                return await _existing(holder, password, promote)
            return Outcome(f"Refused: the username {name!r} is taken; nothing changed.", 1)
        return Outcome(f"Created superuser {user.email} ({user.id}).")


async def _account(email: str) -> dict[str, Any] | None:
    return await User.get_pymongo_collection().find_one(
        {"email": email}, collation=CASE_INSENSITIVE
    )


async def _existing(holder: dict[str, Any], password: str | None, promote: bool) -> Outcome:
    """An account already holds the address: only a superuser already, or --promote, is
    not refused (an already-superuser account gains nothing, so a re-run succeeds)."""
    unused = "; the password given was not set" if password else ""
    if holder.get("is_superuser"):
        return Outcome(f"{describe(holder)} is already a superuser; nothing changed{unused}.")
    if not promote:
        return _refusal(holder)
    promoted = await User.get_pymongo_collection().find_one_and_update(
        {"_id": holder["_id"], "email": holder["email"]},  # still the account described
        {"$set": {"is_superuser": True, "updated_at": utcnow()}},
        return_document=ReturnDocument.AFTER,
    )
    if promoted is None:
        return Outcome(f"Refused: {holder['email']}'s account changed meanwhile; run again.", 1)
    return Outcome(
        f"Promoted the existing account {describe(promoted)} to superuser; "
        f"its password is unchanged (its owner's){unused}."
    )


def _refusal(holder: dict[str, Any]) -> Outcome:
    return Outcome(
        f"Refused: {holder['email']} already belongs to the account {describe(holder)}; "
        "nothing changed. To make that account a superuser (it keeps its own password), "
        "run again with --promote.",
        1,
    )


def describe(account: dict[str, Any]) -> str:
    """Whose account this is, as an admin must see it before trusting it."""
    verified = "verified" if account.get("email_verified") else "NOT verified"
    state = "" if account.get("is_active", True) else ", inactive"
    return f"{account['username']} <{account['email']}> ({account['_id']}, email {verified}{state})"

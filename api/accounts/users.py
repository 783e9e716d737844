"""Accounts: open sign-up, self-or-superuser reads and changes, superuser lists and deletes."""

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from api.accounts import action_tokens, security_log, sessions, throttle
from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import (
    CurrentSession,
    CurrentUser,
    OptionalUser,
    ReadableUser,
    SuperUser,
    TargetUser,
    UserId,
    client_address,
)
from api.accounts.passwords import HashingBusy, hash_password, verify_password
from api.accounts.security_log import Origin
from api.config import API_PREFIX, Settings
from api.core.errors import Conflict, DomainError, Forbidden, NotFound, problem_responses
from api.core.pagination import Page, PageQuery, fetch_page
from api.core.queue import Queue
from api.core.services import AppServices
from api.mail import messages
from api.mail.channel import NAME as EMAIL
from documents import (
    AccessToken,
    Purpose,
    SecurityEventPublic,
    Session,
    User,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from documents.base import utcnow
from documents.security_event import EventType

LOCATION = {"Location": {"description": "The new user's URL", "schema": {"type": "string"}}}
router = APIRouter(prefix="/users", tags=["users"], route_class=AuthFirstRoute)


class SelfLockout(Conflict):
    code = "self-lockout"
    detail = (
        "A superuser cannot deactivate, demote or delete their own account (it could be "
        "the last one that can undo it); another superuser can."
    )


class CurrentPasswordRequired(DomainError):
    code, title = "current-password-required", "Current password required"
    detail = "Changing your own password or email requires the correct current_password."


SIGNUPS_THROTTLED = "Too many sign-ups from this address; wait before trying again."


@router.post(
    "",
    status_code=201,
    responses={**problem_responses(401, 403, 409, 429), 201: {"headers": LOCATION}},
)  # its security, a token or none, is stated in api/accounts/openapi.py
async def create_user(
    body: UserCreate,
    caller: OptionalUser,
    services: AppServices,
    mail: Queue,
    request: Request,
    response: Response,
) -> UserPublic:
    """Sign up (when registration is open); superusers may always create users.

    The welcome email is queued in the same transaction as the account. Open sign-ups
    are counted per client address (each one hashes a password and sends an email)."""
    settings = services.settings
    by_superuser = caller is not None and caller.is_superuser
    if not settings.registration_open and not by_superuser:
        raise Forbidden("Registration is closed; ask an administrator for an account.")
    if body.is_superuser and not by_superuser:
        raise Forbidden("Only superusers may create superusers.")
    reserved: throttle.Reserved = {}
    if not by_superuser:
        client = throttle.client_key(client_address(request), "signup-client")
        limits = {client: settings.signup_max_per_client}
        reserved = await throttle.reserve(limits, settings.signup_window_s, SIGNUPS_THROTTLED)
    try:
        hashed = await hash_password(body.password, settings.bcrypt_rounds)
    except HashingBusy:  # answered nothing and sent nothing: it does not count
        await throttle.give_back(reserved)
        raise
    user = User(**body.model_dump(exclude={"password"}), hashed_password=hashed)

    async def create(session: AsyncClientSession | None) -> None:
        await user.insert(session=session)
        await mail.enqueue(EMAIL, messages.welcome(user, settings.public_url), session)

    await services.atomically(create)
    mail.nudge()
    response.headers["Location"] = f"{API_PREFIX}{router.prefix}/{user.id}"
    return UserPublic.model_validate(user)


@router.get("", responses=problem_responses(401, 403))
async def list_users(
    _: SuperUser,
    page: PageQuery,
    services: AppServices,
    q: Annotated[
        str | None, Query(max_length=100, description="Part of email/username/name")
    ] = None,
    is_active: bool | None = None,
) -> Page[UserPublic]:
    query: dict[str, Any] = {}
    if q:
        pattern = {"$regex": re.escape(q), "$options": "i"}
        query["$or"] = [{"email": pattern}, {"username": pattern}, {"full_name": pattern}]
    if is_active is not None:
        query["is_active"] = is_active
    users = User.get_pymongo_collection()
    rows, next_cursor, total = await fetch_page(users, query, [("_id", 1)], page, services.cursors)
    items = [UserPublic.model_validate(row) for row in rows]
    return Page[UserPublic](items=items, next_cursor=next_cursor, total=total)


@router.get("/{user_id}", responses=problem_responses(401, 403, 404))
async def read_user(user: ReadableUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.get("/{user_id}/events", responses=problem_responses(401, 403, 404))
async def list_user_events(
    user: TargetUser, page: PageQuery, services: AppServices
) -> Page[SecurityEventPublic]:
    """An account's security log, newest first (as `GET /auth/events` shows your own):
    superusers, or the account itself from a password login."""
    return await security_log.page_of(user.id, page, services)


@router.patch("/{user_id}", responses=problem_responses(400, 401, 403, 404, 409, 429))
async def update_user(
    body: UserUpdate,
    target: TargetUser,
    caller: CurrentUser,
    caller_session: CurrentSession,
    services: AppServices,
    mail: Queue,
    request: Request,
) -> UserPublic:
    """Change an account. Only superusers change `is_active` / `is_superuser`.

    Changing your own password or email takes your `current_password`: a stolen access
    token alone must not be able to take the account over. A new email starts
    unverified, and a notice goes to the old address. Changing your own password ends
    your other logins; a superuser setting someone's password, or deactivating them,
    ends all of theirs.
    """
    changes = body.model_dump(exclude_unset=True, exclude={"password", "current_password"})
    if changes.keys() & {"is_active", "is_superuser"} and not caller.is_superuser:
        raise Forbidden("Only superusers may change is_active or is_superuser.")
    own = target.id == caller.id
    if own and (changes.get("is_active") is False or changes.get("is_superuser") is False):
        raise SelfLockout()
    new_email: str | None = changes.get("email")
    # A new address (not the same one in other letters) gets a notice to the old one.
    notice = (
        messages.email_changed(target, new_email, services.settings.public_url)
        if new_email is not None and new_email.lower() != target.email.lower()
        else None
    )
    origin = Origin.of(request)
    if own and (body.password is not None or notice is not None):
        await _require_current_password(body.current_password, target, services.settings, origin)
    end_all = changes.get("is_active") is False
    end_others = False
    if body.password is not None:
        changes["hashed_password"] = await hash_password(
            body.password, services.settings.bcrypt_rounds
        )
        end_others, end_all = own, end_all or not own
    if notice is not None:
        changes["email_verified"] = False
    update: dict[str, Any] = {"$set": {**changes, "updated_at": utcnow()}}
    if end_all:
        update["$inc"] = {"token_version": 1}  # every access token of theirs, at once
    stored: dict[str, Any] | None = None
    logged = _logged_changes(body, target, caller, new_email if notice is not None else None)

    async def change(session: AsyncClientSession | None) -> None:
        nonlocal stored
        stored = await User.get_pymongo_collection().find_one_and_update(
            {"_id": target.id}, update, return_document=ReturnDocument.AFTER, session=session
        )
        if stored is None:
            return
        for kind, detail in logged:  # in the account's log, with the change
            await security_log.record(target.id, kind, origin, services.settings, detail, session)
        if notice is not None:
            # Tokens mailed to the old address must not work once it is not the account's.
            await action_tokens.void(target.id, list(Purpose), session)
            await mail.enqueue(EMAIL, notice, session)

    await services.atomically(change)
    if stored is None:
        raise NotFound("user")
    if notice is not None:
        mail.nudge()
    if end_all:
        await sessions.end_sessions(target.id)
    elif end_others:
        others = [sid for sid in stored.get("session_ids", []) if sid != caller_session]
        await sessions.end_sessions(target.id, others)
    return UserPublic.model_validate(User.model_validate(stored))


def _logged_changes(
    body: UserUpdate, target: User, caller: User, new_email: str | None
) -> list[tuple[EventType, dict[str, Any]]]:
    """What this change puts in the account's security log (a superuser's change of
    someone else's account names who made it)."""
    by = {} if caller.id == target.id else {"by": str(caller.id)}
    logged: list[tuple[EventType, dict[str, Any]]] = []
    if body.is_active is not None and body.is_active != target.is_active:
        logged.append(("account.reactivated" if body.is_active else "account.deactivated", by))
    if body.is_superuser is not None and body.is_superuser != target.is_superuser:
        logged.append(("account.role_changed", {"is_superuser": body.is_superuser, **by}))
    if body.password is not None:
        logged.append(("password.changed", by))
    if new_email is not None:
        logged.append(("email.changed", {"from": target.email, "to": new_email, **by}))
    return logged


CHECKS_THROTTLED = "Too many password checks on this account; wait before trying again."


async def _require_current_password(
    current_password: str | None, user: User, settings: Settings, origin: Origin
) -> None:
    """Counted like a login against the account: a stolen access token must not buy
    unlimited guesses at the password. Every check costs a hash, so the checks are
    counted right or wrong (5 per window); only a failed one counts against the
    account's logins too."""
    if not current_password:
        raise CurrentPasswordRequired()
    given = current_password
    # Its own key, not the login's per-address one: whoever holds a stolen access token
    # gets these 5 checks however many addresses they use.
    checks = f"current-password:{user.id}"
    limits = {
        checks: settings.login_max_failures_per_account_client,
        throttle.account_key(user.id, ""): settings.login_max_failures_per_account,
    }
    reserved = await throttle.checked(
        limits,
        settings.login_failure_window_s,
        lambda: verify_password(given, user.hashed_password),
        CHECKS_THROTTLED,
    )
    if reserved is None:  # counted: at most 5 a window, so logged each time
        await security_log.noted(user.id, "password.check_failed", origin, settings)
        raise CurrentPasswordRequired()
    await throttle.give_back({key: reserved[key] for key in reserved if key != checks})


@router.delete("/{user_id}", status_code=204, responses=problem_responses(401, 403, 404, 409))
async def delete_user(user_id: UserId, caller: SuperUser, services: AppServices) -> None:
    """Delete a user, their items and sessions (atomically where the server has transactions)."""
    if user_id == caller.id:
        raise SelfLockout()

    async def remove(session: AsyncClientSession | None) -> None:
        # What the features keep of the account first (its items: without a transaction,
        # a crash between two of these leaves no orphans), then its logins, then itself.
        for cleanup in services.account_cleanups:
            await cleanup(user_id, session)
        await Session.get_pymongo_collection().delete_many({"user_id": user_id}, session=session)
        await AccessToken.get_pymongo_collection().delete_many(
            {"user_id": user_id}, session=session
        )
        result = await User.get_pymongo_collection().delete_one({"_id": user_id}, session=session)
        if result.deleted_count == 0:
            raise NotFound("user")

    await services.atomically(remove)

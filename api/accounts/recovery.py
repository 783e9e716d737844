"""Password recovery and email verification: single-use tokens sent through the outbox."""

import asyncio
import time
import unicodedata
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from pymongo.asynchronous.client_session import AsyncClientSession

from api.accounts import action_tokens, security_log, sessions, throttle
from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import CurrentUser, client_address
from api.accounts.passwords import hash_password
from api.accounts.security_log import Origin
from api.core.errors import problem_responses
from api.core.queue import Queue
from api.core.services import AppServices
from api.mail import messages
from api.mail.channel import NAME as EMAIL
from documents import Purpose, User
from documents.base import utcnow
from documents.user import CASE_INSENSITIVE, Password

router = APIRouter(prefix="/auth", tags=["auth"], route_class=AuthFirstRoute)

Token = Annotated[str, Field(min_length=1, max_length=200)]


class RecoveryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false
    email: EmailStr


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false
    token: Token
    new_password: Password


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false
    token: Token


class Accepted(BaseModel):
    detail: str


MAIL_THROTTLED = "Too many email requests; wait before asking again."
SENT = Accepted(detail="If an account has this address, an email is on its way.")


@router.post("/password-recovery", status_code=202, responses=problem_responses(429))
async def recover_password(
    body: RecoveryRequest, request: Request, services: AppServices, mail: Queue
) -> Accepted:
    """Email a single-use reset token. The answer, and its timing, are the same whether or
    not the account exists."""
    settings = services.settings
    answer_at = time.monotonic() + settings.recovery_response_floor_ms / 1000
    await _recover(body.email, request, services, mail)
    await asyncio.sleep(answer_at - time.monotonic())
    return SENT


async def _recover(email: str, request: Request, services: AppServices, mail: Queue) -> None:
    settings = services.settings
    user = await User.find_one({"email": email}, collation=CASE_INSENSITIVE)
    # One counter per account however its address is spelled (the lookup ignores case);
    # an address no account has is counted in its case-folded, NFKC-normal form.
    address = (
        f"recovery-account:{user.id}"
        if user is not None
        else f"recovery-email:{unicodedata.normalize('NFKC', email).casefold()}"
    )
    limits = {
        address: settings.recovery_max_per_email,
        throttle.client_key(client_address(request), "recovery-client"): (
            settings.recovery_max_per_client
        ),
    }
    # Every request counts (not only failures): each one may send an email.
    await throttle.reserve(limits, settings.recovery_window_s, MAIL_THROTTLED)
    if user is None or not user.is_active:
        return
    lifetime = timedelta(minutes=settings.password_reset_expire_minutes)

    async def send(session: AsyncClientSession | None) -> None:
        token = await action_tokens.issue(user, Purpose.reset_password, lifetime, session)
        message = messages.password_reset(
            user, settings.public_url, settings.password_reset_expire_minutes
        )
        await mail.enqueue(EMAIL, message, session, secret=token)

    await services.atomically(send)
    mail.nudge()


RESETS_THROTTLED = "Too many failed password resets; wait before trying again."


@router.post("/reset-password", status_code=204, responses=problem_responses(400, 429))
async def reset_password(body: PasswordReset, request: Request, services: AppServices) -> None:
    """Set a new password with an emailed token; every login of the account ends, and
    its failed logins are forgotten (the owner has just proved they hold its mailbox).
    Failed attempts are counted per client (RESET_MAX_FAILURES_PER_CLIENT per
    LOGIN_FAILURE_WINDOW_S, then 429)."""
    settings = services.settings
    # The token first: one indexed read, and the new password is hashed only for a token
    # that can be spent. Only a failure is counted, against its client: a valid token
    # works from an address whose other attempts ran out (behind one NAT, say).
    if not await action_tokens.is_live(body.token, Purpose.reset_password):
        client = throttle.client_key(client_address(request), "reset-client")
        limits = {client: settings.reset_max_failures_per_client}
        await throttle.reserve(limits, settings.login_failure_window_s, RESETS_THROTTLED)
        raise action_tokens.InvalidActionToken()
    # Hashed before the token is spent: a server too busy to hash (503) must not have
    # used it up.
    hashed = await hash_password(body.new_password, settings.bcrypt_rounds)
    record = await action_tokens.consume(body.token, Purpose.reset_password)
    # Only while the account still has the address the token was mailed to: a token sent
    # just before an email change must not reset the password after it.
    changed = await User.get_pymongo_collection().update_one(
        {"_id": record.user_id, "email": record.email},
        {"$set": {"hashed_password": hashed, "updated_at": utcnow()}, "$inc": {"token_version": 1}},
        collation=CASE_INSENSITIVE,
    )
    if changed.matched_count == 0:
        raise action_tokens.InvalidActionToken()
    await action_tokens.void(record.user_id, [Purpose.reset_password])  # any other copy
    slack_s = settings.mongodb_socket_timeout_ms / 1000
    cleared = throttle.clear_account(record.user_id, settings.login_failure_window_s, slack_s)
    logged = security_log.noted(record.user_id, "password.reset", Origin.of(request), settings)
    await asyncio.gather(sessions.end_sessions(record.user_id), cleared, logged)


@router.post("/verify-email/request", status_code=202, responses=problem_responses(401, 429))
async def request_verification(
    user: CurrentUser, request: Request, services: AppServices, mail: Queue
) -> Accepted:
    """Email a single-use token confirming your current address (nothing is sent when it
    is confirmed already). Throttled per account and per client."""
    settings = services.settings
    if user.email_verified:
        return Accepted(detail=f"{user.email} is confirmed already; no email was sent.")
    limits = {
        f"verification-account:{user.id}": settings.verification_max_per_account,
        throttle.client_key(client_address(request), "verification-client"): (
            settings.verification_max_per_client
        ),
    }
    await throttle.reserve(limits, settings.verification_window_s, MAIL_THROTTLED)
    hours = settings.email_verification_expire_hours

    async def send(session: AsyncClientSession | None) -> None:
        token = await action_tokens.issue(
            user, Purpose.verify_email, timedelta(hours=hours), session
        )
        message = messages.verify_email(user, settings.public_url, hours)
        await mail.enqueue(EMAIL, message, session, secret=token)

    await services.atomically(send)
    mail.nudge()
    return Accepted(detail=f"A confirmation email is on its way to {user.email}.")


@router.post("/verify-email", status_code=204, responses=problem_responses(400))
async def verify_email(body: Verification, request: Request, services: AppServices) -> None:
    """Confirm the address the token was sent to (not a newer one the account changed to)."""
    record = await action_tokens.consume(body.token, Purpose.verify_email)
    verified = await User.get_pymongo_collection().update_one(
        {"_id": record.user_id, "email": record.email},
        {"$set": {"email_verified": True, "updated_at": utcnow()}},
    )
    if verified.matched_count:
        confirmed = {"email": record.email}
        origin, settings = Origin.of(request), services.settings
        await security_log.noted(record.user_id, "email.verified", origin, settings, confirmed)

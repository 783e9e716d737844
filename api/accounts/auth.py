"""Sign in (OAuth2 password grant), refresh, log out, and see your logins."""

from typing import Annotated, Literal

from bson import ObjectId
from fastapi import APIRouter, Form, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from pymongo import UpdateOne
from starlette.background import BackgroundTask

from api.accounts import passwords, security_log, sessions, throttle
from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import (
    AccountReader,
    AppSigner,
    CurrentSession,
    CurrentUser,
    client_address,
    signed_in_account,
)
from api.accounts.passwords import verify_against_dummy, verify_password
from api.accounts.security_log import Origin
from api.accounts.tokens import TokenSigner
from api.config import Settings
from api.core.errors import DomainError, NotAuthenticated, NotFound, problem_responses
from api.core.pagination import Page, PageQuery
from api.core.services import AppServices, Services
from api.core.together import Write, write_together
from documents import SecurityEventPublic, Session, SessionPublic, User, UserPublic
from documents.base import ObjectIdParam, utcnow
from documents.user import CASE_INSENSITIVE

SessionId = Annotated[ObjectIdParam, Path(alias="session_id", description="A session's id")]

router = APIRouter(prefix="/auth", tags=["auth"], route_class=AuthFirstRoute)

MAX_LOGIN_LENGTH = 320  # longer than any email or username: refused before it is counted


class PasswordGrant(BaseModel):
    """The OAuth2 password grant's form (RFC 6749 4.3.2), as Swagger UI's Authorize sends it.

    A model rather than FastAPI's `OAuth2PasswordRequestForm`: that one is a class
    dependency, which FastAPI builds in a worker thread on every sign-in."""

    username: Annotated[str, Field(min_length=1, description="Your email or username")]
    password: Annotated[str, Field(min_length=1)]
    grant_type: Annotated[Literal["password"] | None, Field(description="`password`, if sent")] = (
        None
    )
    scope: str = ""
    client_id: str | None = None
    client_secret: str | None = None


class InvalidCredentials(NotAuthenticated):
    code, title = "invalid-credentials", "Invalid credentials"
    detail = "Incorrect username or password."


class InactiveUser(DomainError):
    code, title, detail = "inactive-user", "Inactive user", "This account is deactivated."


class EmailNotVerified(DomainError):
    status, code, title = 403, "email-not-verified", "Email not verified"
    detail = "Confirm your email address first (POST /api/v1/auth/verify-email/request)."


class LoginResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str = Field(description="Opaque; single use: POST it to /auth/refresh")
    user: UserPublic


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false

    refresh_token: str = Field(min_length=1, max_length=200)


def _pair(signer: TokenSigner, user: User, opened: sessions.Opened) -> LoginResponse:
    access = signer.issue(str(user.id), user.token_version, str(opened.session.id))
    return LoginResponse(
        access_token=access,
        expires_in=signer.lifetime_s,
        refresh_token=opened.refresh_token,
        user=UserPublic.model_validate(user),
    )


async def find_by_login(login: str) -> User | None:
    """`login` is an email or a username, matched case-insensitively."""
    field = "email" if "@" in login else "username"
    return await User.find_one({field: login}, collation=CASE_INSENSITIVE)


@router.post("/login", responses=problem_responses(400, 401, 403, 429))
async def login(
    form: Annotated[PasswordGrant, Form()],
    request: Request,
    services: AppServices,
    signer: AppSigner,
) -> LoginResponse:
    """OAuth2 password grant: `username` is the email or the username."""
    settings = services.settings
    if len(form.username) > MAX_LOGIN_LENGTH:  # no account has one: not even a counter
        raise InvalidCredentials()
    address, origin = client_address(request), Origin.of(request)
    async with passwords.hashing_turn():  # a storm is turned away before any database work
        user, settle = await _signed_in(form, address, origin, services)
    refusal = _refusal(user, settings)
    if refusal is not None:
        await write_together(services.client, settle)
        # Given back, so not counted: logged once per window, not once per attempt.
        failed = {"reason": refusal.code}
        refusal.after = BackgroundTask(
            security_log.once_per_window, user.id, "login.failed", origin, settings, failed
        )
        raise refusal
    # Three commands in all: the user, the reservation, and this one, which settles the
    # attempt, opens the session and logs it.
    user_agent, session_id = request.headers.get("user-agent"), ObjectId()
    opened_here = {"session_id": str(session_id)}
    logged = security_log.written(user.id, "login.succeeded", origin, settings, opened_here)
    opened = await sessions.open_session(
        user, settings, user_agent, address, first=settle, then=[logged], session_id=session_id
    )
    return _pair(signer, user, opened)


def _refusal(user: User, settings: Settings) -> DomainError | None:
    """Why an account that gave its password still may not sign in, if it may not."""
    if not user.is_active:
        return InactiveUser()
    if settings.require_verified_email and not user.email_verified:
        return EmailNotVerified()
    return None


async def _signed_in(
    form: PasswordGrant,
    address: str | None,
    origin: Origin,
    services: Services,
) -> tuple[User, list[Write]]:
    """The account whose password this is (401 otherwise), and the writes that settle
    the attempt (its reservation given back, this address's failures cleared, its hash
    brought to today's cost), to be sent along with whatever comes next."""
    settings = services.settings
    user = await find_by_login(form.username)
    account = throttle.account_key(user.id if user else None, form.username)
    # Counted before the password is checked, so a burst cannot outrun the limit; the
    # attempt stays counted if it fails.
    limits, from_here = throttle.password_limits(account, address, settings)
    try:
        reserved = await throttle.checked(
            limits,
            settings.login_failure_window_s,
            lambda: _password_matches(user, form.password, settings.bcrypt_rounds),
        )
    except throttle.TooManyAttempts as refused:
        # Logged once the 429 is sent: an unknown account's must not come back sooner.
        if user is not None:
            refused.after = BackgroundTask(
                security_log.once_per_window, user.id, "login.throttled", origin, settings
            )
        raise
    if user is None:
        raise InvalidCredentials()
    if reserved is None:  # counted, so logged at most as often as the limit lets through
        wrong = InvalidCredentials()
        failed = {"reason": "password"}
        wrong.after = BackgroundTask(
            security_log.noted, user.id, "login.failed", origin, settings, failed
        )
        raise wrong
    settle: list[Write] = [*throttle.give_back_writes(reserved, clear=[from_here])]
    if passwords.cost_of(user.hashed_password) != settings.bcrypt_rounds:
        try:
            settle.append(await _upgraded_hash(user, form.password, settings.bcrypt_rounds))
        except passwords.HashingBusy:
            pass  # the upgrade waits for a sign-in the server has time for
        except BaseException:
            await write_together(services.client, settle)
            raise
    return user, settle


async def _password_matches(user: User | None, password: str, rounds: int) -> bool:
    if user is None:  # the same bcrypt work, so unknown accounts cannot be told apart
        await verify_against_dummy(password, rounds)
        return False
    return await verify_password(password, user.hashed_password)


async def _upgraded_hash(user: User, password: str, rounds: int) -> UpdateOne:
    """The write that re-hashes at the configured cost, so raising BCRYPT_ROUNDS upgrades
    accounts as they sign in (unless the password changed meanwhile)."""
    old, new = user.hashed_password, await passwords.hash_password(password, rounds)
    user.hashed_password = new
    return UpdateOne(
        {"_id": user.id, "hashed_password": old},
        {"$set": {"hashed_password": new}},
        namespace=User.get_pymongo_collection().full_name,
    )


@router.post("/refresh", responses=problem_responses(401))
async def refresh(
    body: RefreshRequest, request: Request, services: AppServices, signer: AppSigner
) -> LoginResponse:
    """A new access token and the next refresh token; the one sent is spent."""
    try:
        opened = await sessions.rotate(body.refresh_token, services.settings)
    except sessions.RefreshReused as reuse:
        ended = {"session_id": str(reuse.session_id)}
        origin, settings = Origin.of(request), services.settings
        await security_log.noted(reuse.user_id, "refresh.reuse_detected", origin, settings, ended)
        raise
    user = await User.find_one({"_id": opened.session.user_id})
    if user is None or not user.is_active or opened.session.id not in user.session_ids:
        raise sessions.InvalidRefreshToken()
    return _pair(signer, user, opened)


@router.post("/logout", status_code=204, responses=problem_responses(401))
async def logout(
    user: CurrentUser, session_id: CurrentSession, request: Request, services: AppServices
) -> None:
    """End this login: its access and refresh tokens stop working at once."""
    if await sessions.end_sessions(user.id, [session_id]):  # not a concurrent logout's
        await _log_ended(user, session_id, request, services)


async def _log_ended(
    user: User, session_id: ObjectId, request: Request, services: AppServices
) -> None:
    ended = {"session_id": str(session_id)}
    origin = Origin.of(request)
    await security_log.noted(user.id, "session.ended", origin, services.settings, ended)


@router.post("/logout-all", status_code=204, responses=problem_responses(401))
async def logout_all(user: CurrentUser, request: Request, services: AppServices) -> None:
    """End every login of this account, this one included."""
    ended = {"sessions": await sessions.end_sessions(user.id)}
    origin = Origin.of(request)
    await security_log.noted(user.id, "sessions.ended_all", origin, services.settings, ended)


@router.get("/sessions", responses=problem_responses(401))
async def list_sessions(user: CurrentUser, session_id: CurrentSession) -> Page[SessionPublic]:
    """Your live logins, newest first."""
    found = Session.find(
        {"_id": {"$in": user.session_ids}, "revoked_at": None, "expires_at": {"$gt": utcnow()}}
    ).sort("-created_at")
    items = [
        SessionPublic.model_validate(s).model_copy(update={"current": s.id == session_id})
        for s in await found.to_list()
    ]
    return Page[SessionPublic](items=items, next_cursor=None)


@router.delete("/sessions/{session_id}", status_code=204, responses=problem_responses(401, 404))
async def revoke_session(
    target: SessionId, user: CurrentUser, request: Request, services: AppServices
) -> None:
    """End one of your logins."""
    if target not in user.session_ids:
        raise NotFound("session")
    if await sessions.end_sessions(user.id, [target]):
        await _log_ended(user, target, request, services)


@router.get("/me", responses=problem_responses(401))
async def read_me(_: AccountReader, request: Request) -> UserPublic:
    return UserPublic.model_validate(signed_in_account(request))


@router.get("/events", responses=problem_responses(401, 403))
async def list_events(
    user: CurrentUser, page: PageQuery, services: AppServices
) -> Page[SecurityEventPublic]:
    """Your account's security log, newest first: sign-ins (and failed ones), ended
    logins, password, email and token changes, each with the client's address and
    user agent. A password login only: a personal access token gets a 403."""
    return await security_log.page_of(user.id, page, services)

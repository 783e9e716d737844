"""Dependencies that validate: who is calling, and which account they may touch."""

import logging
from dataclasses import dataclass
from typing import Annotated

from bson import ObjectId
from bson.errors import InvalidId
from fastapi import Depends, Path, Request, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from starlette.requests import HTTPConnection

from api.accounts import personal_tokens
from api.accounts.tokens import InvalidToken, TokenSigner
from api.config import API_PREFIX
from api.core.errors import Forbidden, NotAuthenticated, NotFound
from api.core.services import dependency, get_services
from documents import User
from documents.base import ObjectIdParam

log = logging.getLogger("docstore.accounts")
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=f"{API_PREFIX}/auth/login", auto_error=False)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


@dataclass(frozen=True)
class Login:
    """Who a request speaks for: a password login (its session) or a personal access
    token; either way its user, as loaded for this request."""

    user: User
    token_version: int
    expires_at: float | None  # seconds since the epoch; None: until revoked
    session_id: ObjectId | None = None
    access_token: personal_tokens.Grant | None = None

    def still_valid(self, user: User) -> bool:
        """One document decides it: the account is active, and this login is still live."""
        if not user.is_active or user.token_version != self.token_version:
            return False
        if self.access_token is not None:
            return self.access_token.id in user.access_token_ids
        return self.session_id in user.session_ids

    @property
    def acting_user(self) -> User:
        """Whom the request acts as: a personal access token never carries superuser
        powers (its scopes speak of *your* items and account), even a superuser's."""
        if self.access_token is None or not self.user.is_superuser:
            return self.user
        acting: User = self.user.model_copy(update={"is_superuser": False})
        return acting

    def missing_scopes(self, needed: list[str]) -> list[str] | None:
        """What a personal access token lacks for this (None: a token may never do it)."""
        if self.access_token is None:
            return []  # a password login may do all its user may
        if not needed:
            return None
        return [scope for scope in needed if scope not in self.access_token.scopes]


async def authenticate(token: str, signer: TokenSigner) -> Login:
    """The login a bearer token belongs to, if its signature (or secret), expiry and
    session (or revocation) all hold."""
    if personal_tokens.looks_personal(token):
        access_token = await personal_tokens.find(token)
        owner = await _user(access_token.user_id)
        expiry = access_token.expires_at.timestamp() if access_token.expires_at else None
        if owner is not None:
            login = Login(owner, access_token.token_version, expiry, access_token=access_token)
            if login.still_valid(owner):
                await personal_tokens.touch(access_token)
                return login
        raise personal_tokens.InvalidAccessToken()
    try:
        claims = signer.verify(token)
        user_id, session_id = ObjectId(claims.user_id), ObjectId(claims.session_id)
    except (InvalidToken, InvalidId, TypeError):
        raise NotAuthenticated("The access token is invalid or expired.") from None
    user = await _user(user_id)
    if user is not None:
        login = Login(user, claims.token_version, claims.expires_at, session_id)
        if login.still_valid(user):
            return login
    raise NotAuthenticated("The access token is no longer valid.")


async def _user(user_id: ObjectId) -> User | None:
    """The user, read raw and validated once (Beanie's find_one adds to every request
    what its query builder costs)."""
    stored = await User.get_pymongo_collection().find_one({"_id": user_id})
    return None if stored is None else User.model_validate(stored)


def client_address(request: Request) -> str | None:
    """The caller's address (as the proxy headers tell it, when Uvicorn trusts them).

    X-Forwarded-For with no TRUSTED_PROXIES set is logged, once: behind a proxy nobody
    named, every client is counted under the proxy's address."""
    host = request.client.host if request.client else None
    if "x-forwarded-for" in request.headers:
        services = get_services(request)
        if not services.settings.trusted_proxies and services.first_time("untrusted proxy"):
            log.warning(
                "X-Forwarded-For from %s ignored: TRUSTED_PROXIES is not set, so behind a "
                "proxy every client counts as the proxy's address (see the docs' deployment page)",
                host,
            )
    return host


def token_signer(connection: HTTPConnection) -> TokenSigner:
    return get_services(connection).get(TokenSigner)


AppSigner = Annotated[TokenSigner, Depends(dependency(token_signer))]


async def optional_login(
    token: BearerToken,
    request: Request,
    signer: AppSigner,
) -> Login | None:
    """The caller's login when a token is sent; a bad token is still a 401, never anonymous.
    Loaded once per request, whichever scopes the dependencies on it ask for."""
    if not token:
        return None
    login: Login | None = getattr(request.state, "login", None)
    if login is None:
        login = request.state.login = await authenticate(token, signer)
    return login


class MissingScope(Forbidden):
    code, title = "insufficient-scope", "Insufficient scope"


def allowed(login: Login, needed: list[str]) -> None:
    """403 unless this login may do what needs these scopes."""
    missing = login.missing_scopes(needed)
    if missing is None:
        raise MissingScope("A personal access token cannot do this: sign in with your password.")
    if missing:
        raise MissingScope(f"This access token lacks the scope {', '.join(missing)}.")


async def optional_user(
    login: Annotated[Login | None, Depends(optional_login)], scopes: SecurityScopes
) -> User | None:
    if login is None:
        return None
    allowed(login, scopes.scopes)
    return login.acting_user


def required(login: Login | None, needed: list[str]) -> Login:
    """A login that may do what needs these scopes: 401 without one, 403 when it may not.
    With no scopes named, only a password login will do; a personal access token must
    hold every scope named."""
    if login is None:
        raise NotAuthenticated()
    allowed(login, needed)
    return login


async def current_user(
    login: Annotated[Login | None, Depends(optional_login)], scopes: SecurityScopes
) -> User:
    """The caller, whose login may do what needs `scopes` (`required`)."""
    return required(login, scopes.scopes).acting_user


async def login_first(request: Request, scopes: list[str]) -> Login:
    """The caller, from the headers alone and checked as `current_user` checks it: for a
    route that must know who asks before it reads a large body. (The login is kept on
    the request, so its dependencies do not authenticate it again.)"""
    token = await oauth2_scheme(request)
    return required(await optional_login(token, request, token_signer(request)), scopes)


async def superuser(user: Annotated[User, Security(current_user)]) -> User:
    if not user.is_superuser:
        raise Forbidden("Only superusers may do this.")
    return user


async def current_session(
    request: Request, user: Annotated[User, Security(current_user)]
) -> ObjectId:
    """The session (password login) the caller's access token belongs to."""
    session_id: ObjectId = request.state.login.session_id
    return session_id


def signed_in_account(request: Request) -> User:
    """The caller's account as stored (not as a token acts: see Login.acting_user)."""
    login: Login = request.state.login
    return login.user


OptionalUser = Annotated[User | None, Security(optional_user)]
CurrentSession = Annotated[ObjectId, Depends(current_session)]
# A password login (a personal access token may not): the safe default.
CurrentUser = Annotated[User, Security(current_user)]
SuperUser = Annotated[User, Depends(superuser)]
# A password login, or a personal access token with the scope named.
ItemReader = Annotated[User, Security(current_user, scopes=["items:read"])]
ItemWriter = Annotated[User, Security(current_user, scopes=["items:write"])]
AccountReader = Annotated[User, Security(current_user, scopes=["account:read"])]

UserId = Annotated[ObjectIdParam, Path(description="The user's 24-hex id")]


async def target_user(
    user_id: UserId, user: Annotated[User, Security(current_user)], request: Request
) -> User:
    """Yourself (as stored), or anyone for a superuser; asking for another account is
    403 either way."""
    if user_id == user.id:
        return signed_in_account(request)
    if not user.is_superuser:
        raise Forbidden("You may only see and change your own account.")
    target = await User.find_one({"_id": user_id})
    if target is None:
        raise NotFound("user")
    return target


TargetUser = Annotated[User, Depends(target_user)]  # to change: a password login
ReadableUser = Annotated[User, Security(target_user, scopes=["account:read"])]

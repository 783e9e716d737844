"""Dependencies that validate: who is calling, and which account they may touch."""

import logging
from dataclasses import dataclass
from typing import Annotated

from bson import ObjectId
from bson.errors import InvalidId
from fastapi import Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from api.accounts.tokens import AccessClaims, InvalidToken, TokenSigner
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
    """What an accepted access token speaks for: its user, and its session as an id."""

    user: User
    claims: AccessClaims
    session_id: ObjectId

    def still_valid(self, user: User) -> bool:
        """One document decides it: the account is active, and this login is still live."""
        return (
            user.is_active
            and user.token_version == self.claims.token_version
            and self.session_id in user.session_ids
        )


async def authenticate(token: str, signer: TokenSigner) -> Login:
    """The login an access token belongs to, if its signature, expiry and session all hold."""
    try:
        claims = signer.verify(token)
        user_id, session_id = ObjectId(claims.user_id), ObjectId(claims.session_id)
    except (InvalidToken, InvalidId, TypeError):
        raise NotAuthenticated("The access token is invalid or expired.") from None
    user = await User.find_one({"_id": user_id})
    if user is not None:
        login = Login(user, claims, session_id)
        if login.still_valid(user):
            return login
    raise NotAuthenticated("The access token is no longer valid.")


_told_of_untrusted_proxy = False


def client_address(request: Request) -> str | None:
    """The caller's address (as the proxy headers tell it, when Uvicorn trusts them).

    X-Forwarded-For with no TRUSTED_PROXIES set is logged, once: behind a proxy nobody
    named, every client is counted under the proxy's address."""
    global _told_of_untrusted_proxy
    host = request.client.host if request.client else None
    untold = not _told_of_untrusted_proxy and "x-forwarded-for" in request.headers
    if untold and not get_services(request).settings.trusted_proxies:
        _told_of_untrusted_proxy = True
        log.warning(
            "X-Forwarded-For from %s ignored: TRUSTED_PROXIES is not set, so behind a "
            "proxy every client counts as the proxy's address (see the README)",
            host,
        )
    return host


def token_signer(connection: HTTPConnection) -> TokenSigner:
    signer: TokenSigner = connection.app.state.signer
    return signer


AppSigner = Annotated[TokenSigner, Depends(dependency(token_signer))]


async def optional_user(token: BearerToken, request: Request, signer: AppSigner) -> User | None:
    """The caller when a token is sent; a bad token is still a 401, never anonymous."""
    if not token:
        return None
    login = await authenticate(token, signer)
    request.state.session_id = login.session_id
    return login.user


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise NotAuthenticated()
    return user


async def superuser(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_superuser:
        raise Forbidden("Only superusers may do this.")
    return user


async def current_session(
    request: Request, user: Annotated[User, Depends(current_user)]
) -> ObjectId:
    """The session (login) the caller's access token belongs to."""
    session_id: ObjectId = request.state.session_id
    return session_id


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentSession = Annotated[ObjectId, Depends(current_session)]
CurrentUser = Annotated[User, Depends(current_user)]
SuperUser = Annotated[User, Depends(superuser)]

UserId = Annotated[ObjectIdParam, Path(description="The user's 24-hex id")]


async def target_user(user_id: UserId, user: CurrentUser) -> User:
    """Yourself, or anyone for a superuser; asking for another account is 403 either way."""
    if user_id == user.id:
        return user
    if not user.is_superuser:
        raise Forbidden("You may only see and change your own account.")
    target = await User.find_one({"_id": user_id})
    if target is None:
        raise NotFound("user")
    return target


TargetUser = Annotated[User, Depends(target_user)]

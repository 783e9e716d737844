"""`/auth/tokens`: personal access tokens, managed only from a password login."""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.accounts import personal_tokens, security_log
from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import CurrentSession, CurrentUser
from api.accounts.security_log import Origin
from api.core.errors import NotFound, problem_responses
from api.core.pagination import Page
from api.core.services import AppServices
from documents import AccessToken, AccessTokenCreate, AccessTokenCreated, AccessTokenPublic
from documents.base import ObjectIdParam

router = APIRouter(prefix="/auth/tokens", tags=["auth"], route_class=AuthFirstRoute)
TokenId = Annotated[ObjectIdParam, Path(description="An access token's id")]


@router.post("", status_code=201, responses=problem_responses(401, 403, 409))
async def create_token(
    body: AccessTokenCreate,
    user: CurrentUser,
    session_id: CurrentSession,
    request: Request,
    services: AppServices,
) -> AccessTokenCreated:
    """A token for a program: shown this once, stored only as a hash. It can do what its
    scopes allow, never manage tokens, passwords, email or sessions."""
    token, text = await personal_tokens.issue(user, session_id, body)
    made = {"token_id": str(token.id), "name": token.name, "scopes": list(token.scopes)}
    await security_log.noted(user.id, "token.created", Origin.of(request), services.settings, made)
    return AccessTokenCreated(**AccessTokenPublic.model_validate(token).model_dump(), token=text)


@router.get("", responses=problem_responses(401, 403))
async def list_tokens(user: CurrentUser) -> Page[AccessTokenPublic]:
    """Your live tokens, newest first (never their secrets)."""
    found = AccessToken.find({"_id": {"$in": user.access_token_ids}}).sort("-created_at")
    items = [AccessTokenPublic.model_validate(token) for token in await found.to_list()]
    return Page[AccessTokenPublic](items=items, next_cursor=None)


@router.delete("/{token_id}", status_code=204, responses=problem_responses(401, 403, 404))
async def revoke_token(
    token_id: TokenId, user: CurrentUser, request: Request, services: AppServices
) -> None:
    """Revoke a token: it stops working at once, on open WebSockets too."""
    if not await personal_tokens.revoke(user, token_id):
        raise NotFound("access token")
    revoked = {"token_id": str(token_id)}
    origin = Origin.of(request)
    await security_log.noted(user.id, "token.revoked", origin, services.settings, revoked)

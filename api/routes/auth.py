"""Sign in with the OAuth2 password grant; see who you are."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api import throttle
from api.deps import CurrentUser
from api.errors import InactiveUser, InvalidCredentials, problem_responses
from api.security import verify_against_dummy, verify_password
from api.services import AppServices
from documents import User, UserPublic
from documents.user import CASE_INSENSITIVE

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserPublic


async def find_by_login(login: str) -> User | None:
    """`login` is an email or a username, matched case-insensitively."""
    field = "email" if "@" in login else "username"
    return await User.find_one({field: login}, collation=CASE_INSENSITIVE)


@router.post("/login", responses=problem_responses(400, 401, 429))
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    services: AppServices,
) -> LoginResponse:
    """OAuth2 password grant: `username` is the email or the username."""
    settings = services.settings
    user = await find_by_login(form.username)
    account = f"account:{user.id if user else form.username.lower()}"
    client = f"client:{request.client.host if request.client else 'unknown'}"
    await throttle.check(
        {
            account: settings.login_max_failures_per_account,
            client: settings.login_max_failures_per_client,
        }
    )
    if user is None:
        await verify_against_dummy(form.password, settings.bcrypt_rounds)
    if user is None or not await verify_password(form.password, user.hashed_password):
        await throttle.record_failure([account, client], settings.login_failure_window_s)
        raise InvalidCredentials()
    await throttle.clear(account)
    if not user.is_active:
        raise InactiveUser()
    token = services.signer.issue(str(user.id), user.token_version)
    return LoginResponse(
        access_token=token,
        expires_in=services.signer.lifetime_s,
        user=UserPublic.model_validate(user),
    )


@router.get("/me", responses=problem_responses(401))
async def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)

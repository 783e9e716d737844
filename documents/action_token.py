"""Single-use tokens mailed to users (password reset, email verification), stored hashed."""

from datetime import datetime
from enum import StrEnum

from beanie import PydanticObjectId
from pymongo import IndexModel

from documents.base import ApiDocument


class Purpose(StrEnum):
    reset_password = "reset-password"
    verify_email = "verify-email"


class ActionToken(ApiDocument):
    user_id: PydanticObjectId
    purpose: Purpose
    token_hash: str
    email: str  # the address it was sent to: verifying it verifies this address only
    expires_at: datetime
    used_at: datetime | None = None

    class Settings:
        name = "action_tokens"
        indexes = [  # noqa: RUF012
            IndexModel("token_hash", unique=True),
            IndexModel("user_id"),  # voiding an account's tokens (a new email, a reset)
            IndexModel("expires_at", expireAfterSeconds=0),
        ]

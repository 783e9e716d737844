"""Throttle counters: failures of one key in its window, removed by a TTL index after it."""

from datetime import datetime

from beanie import Document
from pydantic import Field
from pymongo import IndexModel


class LoginAttempts(Document):
    """Failures of one key (`account:<id or login>` or `client:<address>`) in its window."""

    id: str = Field(alias="_id")  # type: ignore[assignment]
    failures: int
    window_ends: datetime

    class Settings:
        name = "login_attempts"
        indexes = [IndexModel("window_ends", expireAfterSeconds=0)]  # noqa: RUF012

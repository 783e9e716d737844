"""Brute-force protection for logins: failures counted per account and per client.

The counters live in MongoDB (`login_attempts`, one document per key, removed by a
TTL index once its window has passed), so limits hold across workers, hosts and
restarts. A throttled attempt is refused before any bcrypt work.
"""

import math
from datetime import timedelta

from api.core.errors import DomainError
from documents import LoginAttempts
from documents.base import utcnow


class TooManyAttempts(DomainError):
    status, code, title = 429, "too-many-attempts", "Too many attempts"
    detail = "Too many failed logins; wait before trying again."

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.headers = {"Retry-After": str(retry_after_s)}


async def check(limits: dict[str, int]) -> None:
    """429 when any key has reached its limit of failures in its current window."""
    now = utcnow()
    found = LoginAttempts.get_pymongo_collection().find(
        {"_id": {"$in": list(limits)}, "window_ends": {"$gt": now}}
    )
    async for doc in found:
        if doc["failures"] >= limits[doc["_id"]]:
            raise TooManyAttempts(max(1, math.ceil((doc["window_ends"] - now).total_seconds())))


async def record_failure(keys: list[str], window_s: int) -> None:
    attempts = LoginAttempts.get_pymongo_collection()
    now = utcnow()
    for key in keys:
        counted = await attempts.update_one(
            {"_id": key, "window_ends": {"$gt": now}}, {"$inc": {"failures": 1}}
        )
        if counted.matched_count == 0:  # no window open: this failure starts one
            fresh = {"failures": 1, "window_ends": now + timedelta(seconds=window_s)}
            await attempts.update_one({"_id": key}, {"$set": fresh}, upsert=True)


async def clear(key: str) -> None:
    await LoginAttempts.get_pymongo_collection().delete_one({"_id": key})

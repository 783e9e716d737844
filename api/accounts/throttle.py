"""Brute-force and abuse protection: attempts counted per key (account, client, address).

The counters live in MongoDB (`login_attempts`, one document per key, removed by a
TTL index once its window has passed), so limits hold across workers, hosts and
restarts. An attempt is *reserved* with one atomic increment before any bcrypt work
or email: a burst of concurrent requests cannot all pass the check before any of
them is counted. A refused attempt gives its reservation back, so the stored count
is exactly the attempts that were let through.
"""

import contextlib
import math
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from api.core.errors import DomainError
from documents import LoginAttempts
from documents.base import utcnow


class TooManyAttempts(DomainError):
    status, code, title = 429, "too-many-attempts", "Too many attempts"
    detail = "Too many failed logins; wait before trying again."

    def __init__(self, retry_after_s: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}


Reserved = dict[str, datetime]  # key -> the end of the window its attempt was counted in


async def reserve(limits: dict[str, int], window_s: int, detail: str | None = None) -> Reserved:
    """Count one attempt against every key of `limits`; 429 (counting nothing) when that
    takes any key past its limit in its current window."""
    counted: Reserved = {}
    over: list[datetime] = []
    for key, limit in limits.items():
        count, window_ends = await _count(key, window_s)
        counted[key] = window_ends
        if count > limit:
            over.append(window_ends)
    if over:
        await give_back(counted)
        seconds = (max(over) - utcnow()).total_seconds()
        raise TooManyAttempts(max(1, math.ceil(seconds)), detail)
    return counted


async def _count(key: str, window_s: int) -> tuple[int, datetime]:
    """One more attempt on `key`: its count and the end of its window, atomically."""
    attempts = LoginAttempts.get_pymongo_collection()
    while True:
        now = utcnow()
        doc = await attempts.find_one_and_update(
            {"_id": key, "window_ends": {"$gt": now}},
            {"$inc": {"failures": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return int(doc["failures"]), doc["window_ends"]
        # No open window: open one, empty (restarting a passed one that awaits the TTL
        # sweep), then count again. An upsert is not a counter here: concurrent first
        # upserts were seen to lose or repeat increments; a plain $inc loses none.
        fresh = {"failures": 0, "window_ends": now + timedelta(seconds=window_s)}
        # Another request opened the window first: count in it.
        with contextlib.suppress(DuplicateKeyError):
            await attempts.update_one(
                {"_id": key, "window_ends": {"$lte": now}}, {"$set": fresh}, upsert=True
            )


async def give_back(reserved: Reserved) -> None:
    """Return reserved attempts that turned out not to count (refused, or succeeded), to
    the window they were counted in: never to a newer one, which would buy a guess."""
    attempts = LoginAttempts.get_pymongo_collection()
    for key, window_ends in reserved.items():
        await attempts.update_one(
            {"_id": key, "window_ends": window_ends, "failures": {"$gt": 0}},
            {"$inc": {"failures": -1}},
        )


async def clear(key: str) -> None:
    await LoginAttempts.get_pymongo_collection().delete_one({"_id": key})

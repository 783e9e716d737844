"""Brute-force and abuse protection: attempts counted per key (account, client, address).

The counters live in MongoDB (`login_attempts`, one document per key, removed by a
TTL index once its window has passed), so limits hold across workers, hosts and
restarts. An attempt is *reserved* with one atomic increment before any bcrypt work
or email: a burst of concurrent requests cannot all pass the check before any of
them is counted. A key at its limit counts nothing more, and a refused attempt gives
back what it counted at its other keys, so the stored count is exactly the attempts
that were let through.

Reserving every key of an attempt is one command while their windows are open and
under their limits (an unordered batch of conditional increments); only a key at its
limit, in a passed window or written oddly by another tool costs more. Giving back is
a list of writes the caller may send along with its own (a login sends them with its
new session), so a clean sign-in spends no command of its own on its counters.
"""

import asyncio
import hashlib
import ipaddress
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from api.config import Settings
from api.core.errors import DomainError
from api.core.retry import Retry
from documents import LoginAttempts
from documents.base import utcnow


class TooManyAttempts(DomainError):
    status, code, title = 429, "too-many-attempts", "Too many attempts"
    detail = "Too many failed logins; wait before trying again."

    def __init__(self, retry_after_s: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}


# key -> the windows its attempt may have been counted in: the window it was counted in
# matches, any later one does not (a give-back must never buy a guess in a newer window).
Reserved = dict[str, dict[str, datetime]]
OPENING_TRIES = 5  # a key still changing under a reservation after this many tries: refused
# A window closer than this to its end is not reserved in by the one-command path, so the
# bounds it gives back within exclude every window opened after this one.
CLOSING_MARGIN_S = 5.0
DUPLICATE_KEY = 11000
# A counter fit to count in: a number (not NaN, not an array, whose elements a query
# would compare one by one) and a date. Another tool may write anything; a counter that
# is not sound is replaced by a fresh window, never incremented (an `$inc` on it fails).
SOUND = {
    "$expr": {
        "$and": [
            {"$isNumber": "$failures"},
            {"$gte": ["$failures", -math.inf]},  # NaN sorts below every number
            {"$eq": [{"$type": "$window_ends"}, "date"]},
        ]
    }
}


def account_key(user_id: object | None, login: str) -> str:
    """The key of an account's counter: `account:<id>`, or for a login name no account
    has, `login-name:<its SHA-256>`. Nothing a caller types can spell another key: an id
    is hex, and a name only ever appears hashed."""
    if user_id is not None:
        return f"account:{user_id}"
    return f"login-name:{hashlib.sha256(login.casefold().encode()).hexdigest()}"


def client_key(address: str | None, kind: str = "client") -> str:
    """The key of a client address's `kind` counter. An IPv6 address counts as its /64:
    one host is routinely given a whole /64 to pick addresses from."""
    if address is None:
        return f"{kind}:unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:  # not an address (a test client, a proxy's odd value): as it is
        return f"{kind}:{address[:100]}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"{kind}:{parsed.ipv4_mapped}"
        return f"{kind}:{ipaddress.IPv6Network((parsed, 64), strict=False)}"
    return f"{kind}:{parsed}"


def password_limits(
    account: str, address: str | None, settings: Settings
) -> tuple[dict[str, int], str]:
    """The limits a password guess at `account` from `address` counts against, and the
    key of the account from this address: the one a success clears.

    The tight limit is one account from one address, so one stranger's failures do not
    lock the owner out; the looser account-wide one stops many addresses sharing the
    guessing, so it is not cleared by a success (that would reset it for whoever
    guesses next), only by a password reset."""
    client = client_key(address)
    from_here = f"{account}@{client}"
    limits = {
        from_here: settings.login_max_failures_per_account_client,
        account: settings.login_max_failures_per_account,
        client: settings.login_max_failures_per_client,
    }
    return limits, from_here


async def reserve(limits: dict[str, int], window_s: int, detail: str | None = None) -> Reserved:
    """Count one attempt against every key of `limits`; 429 (counting nothing) when that
    takes any key past its limit in its current window."""
    counted, slow = await _reserve_in_open_windows(limits, window_s)
    over: list[datetime] = []
    results = await asyncio.gather(
        *(_count(key, limits[key], window_s) for key in slow), return_exceptions=True
    )
    failed: BaseException | None = None
    for key, result in zip(slow, results, strict=True):
        if isinstance(result, BaseException):
            failed = result
        elif result[1]:
            counted[key] = {"$eq": result[0]}
        else:
            over.append(result[0])
    if failed is None and not over:
        return counted
    await give_back(counted)  # refused, or answered nothing: what was counted goes back
    if failed is not None:
        raise failed
    seconds = (max(over) - utcnow()).total_seconds()
    raise TooManyAttempts(max(1, math.ceil(seconds)), detail)


async def _reserve_in_open_windows(
    limits: dict[str, int], window_s: int
) -> tuple[Reserved, list[str]]:
    """One command: count the attempt in every key whose window is open (not about to
    close) and under its limit, opening a window for a key that has none. The keys it
    could not count in (at their limit, in a passed window, odd) are left to `_count`."""
    now = utcnow()
    margin = timedelta(seconds=min(CLOSING_MARGIN_S, window_s / 2))
    window = timedelta(seconds=window_s)
    still_open = now + margin
    writes = [
        UpdateOne(
            {"_id": key, "window_ends": {"$gt": still_open}, "failures": {"$lt": limit}, **SOUND},
            {"$inc": {"failures": 1}, "$setOnInsert": {"window_ends": now + window}},
            upsert=True,
        )
        for key, limit in limits.items()
    ]
    keys = list(limits)
    missed: set[int] = set()
    try:
        await LoginAttempts.get_pymongo_collection().bulk_write(writes, ordered=False)
    except BulkWriteError as error:
        # A key whose document exists but did not match (at its limit, its window passed
        # or closing, written oddly by another tool) makes its upsert a duplicate key.
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        missed = {int(e["index"]) for e in errors}
    # A window counted in here ends after `still_open` and was opened by `now`, or by
    # another request during this command, which began before `still_open` (a slower
    # command only makes the give-back miss: counted, never bought). A later window
    # opens after this one ends, so it ends after `still_open + window`.
    bounds = {"$gt": still_open, "$lte": still_open + window}
    counted: Reserved = {keys[i]: bounds for i in range(len(keys)) if i not in missed}
    return counted, [keys[i] for i in sorted(missed)]


async def checked(
    limits: dict[str, int],
    window_s: int,
    check: Callable[[], Awaitable[bool]],
    detail: str | None = None,
) -> Reserved | None:
    """Reserve an attempt (429 past a limit, saying `detail`), then run `check` (a
    password check). A failed check stays counted: None. A passed one returns its
    reservation, for the caller to give back (`give_back`, or `give_back_writes` along
    with its own writes). One that raised (a busy hashing pool) gives it back now: it
    answered nothing, so it cost the caller no guess."""
    reserved = await reserve(limits, window_s, detail)
    try:
        passed = await check()
    except BaseException:
        await give_back(reserved)
        raise
    return reserved if passed else None


async def _count(key: str, limit: int, window_s: int) -> tuple[datetime, bool]:
    """One more attempt on `key` if its window has room, atomically: the end of its
    window, and whether the attempt was counted. At its limit it is not: a refused
    attempt never raises a count, so it never refuses another in passing. One round trip
    while the window has room, two at the limit or to open a window."""
    attempts = LoginAttempts.get_pymongo_collection()
    async for _ in Retry(0, 0, tries=OPENING_TRIES):  # at once: it races, it does not wait
        now = utcnow()
        open_window = {"_id": key, "window_ends": {"$gt": now}, **SOUND}
        doc = await attempts.find_one_and_update(
            {**open_window, "failures": {"$lt": limit}},
            {"$inc": {"failures": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return doc["window_ends"], True
        full = await attempts.find_one({**open_window, "failures": {"$gte": limit}})
        if full is not None:
            return full["window_ends"], False
        # No open, sound window: open one holding this attempt. It replaces a passed
        # window awaiting the TTL sweep, or a counter some other tool wrote oddly. An
        # upserting find-and-increment is not used: concurrent ones were seen to lose or
        # repeat increments; a plain update loses none.
        window_ends = now + timedelta(seconds=window_s)
        open_and_sound = {"$and": [SOUND["$expr"], {"$gt": ["$window_ends", now]}]}
        try:
            opened = await attempts.update_one(
                {"_id": key, "$expr": {"$not": [open_and_sound]}},
                {"$set": {"failures": 1, "window_ends": window_ends}},
                upsert=True,
            )
        except DuplicateKeyError:
            continue  # another request opened the window first (or it had room again)
        if opened.upserted_id is not None or opened.modified_count == 1:
            return window_ends, True
    # Still changing under us after all those tries (a key in a storm of attempts and
    # give-backs): refused, as a key at its limit is, rather than an error.
    return utcnow() + timedelta(seconds=window_s), False


def give_back_writes(reserved: Reserved, clear: Iterable[str] = ()) -> list[UpdateOne]:
    """The writes that return reserved attempts that turned out not to count (refused, or
    succeeded) to the window they were counted in, never to a newer one, which would buy
    a guess; and set the counters of `clear` to zero (a success resets an account). A
    cleared counter keeps its window, so the next attempt need not open one. Each names
    its collection, so they can go along in a client-level bulk write."""
    cleared = set(clear)
    namespace = LoginAttempts.get_pymongo_collection().full_name
    return [
        UpdateOne(
            {"_id": key, "window_ends": window, "failures": {"$gt": 0}},
            {"$set": {"failures": 0}} if key in cleared else {"$inc": {"failures": -1}},
            namespace=namespace,
        )
        for key, window in reserved.items()
    ]


async def give_back(reserved: Reserved, clear: Iterable[str] = ()) -> None:
    """`give_back_writes`, sent now in one round trip."""
    writes = give_back_writes(reserved, clear)
    if writes:
        await LoginAttempts.get_pymongo_collection().bulk_write(writes, ordered=False)


async def clear_account(user_id: object, window_s: int, slack_s: float) -> None:
    """Forget an account's failed logins, from every address: its owner just proved they
    hold its mailbox (a password reset), so a lock others ran up must not keep them out.
    Each counter is kept, at zero, in a fresh window that ends after any an attempt in
    flight could give back to: one reserved before this write lands, which may be up to
    `slack_s` (the longest a command may take) after now. So such an attempt cannot buy
    a guess in it (a deleted counter would be re-opened by the next attempt with a
    window such an attempt might still match)."""
    account = account_key(user_id, "")
    from_anywhere = {"$or": [{"_id": account}, {"_id": {"$regex": f"^{account}@"}}]}
    fresh = utcnow() + timedelta(seconds=window_s + CLOSING_MARGIN_S + slack_s + 1)
    await LoginAttempts.get_pymongo_collection().update_many(
        from_anywhere, {"$set": {"failures": 0, "window_ends": fresh}}
    )

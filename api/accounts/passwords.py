"""Password hashing (bcrypt, off the event loop) and the digest of high-entropy tokens.

No routes here: this module is used by the API and the admin scripts alike. The
API sizes the pool and bounds how many hashes may wait for it (`hashing_pool`): past it, a
request is a 503 with Retry-After instead of a queue that grows without end.
"""

import asyncio
import contextlib
import functools
import hashlib
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import bcrypt

from api.core.errors import DomainError

P = ParamSpec("P")
R = TypeVar("R")

# bcrypt releases the GIL, so a small pool keeps hashing off the event loop
# without letting a burst of logins queue unbounded CPU work. The admin scripts hash on
# every core; the API sizes its own pool (`hashing_pool`).
_CORES = os.cpu_count() or 2
HASHING_NICENESS = 19  # how far below the event loop's CPU priority hashing runs


def _lower_priority() -> None:
    """Run this pool thread below the event loop, so a storm of sign-ins takes the idle
    CPU rather than the loop's (niceness, not SCHED_IDLE: docs/benchmarks.md says what
    was measured). Linux gives each thread its own niceness; elsewhere this changes
    nothing."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


@dataclass(frozen=True)
class _Pool:
    """The threads that hash, and how the API bounds the sign-ins waiting for them."""

    threads: int
    max_waiting: int | None = None  # hashes that may wait for a free thread; None: any
    turns: asyncio.Semaphore | None = None  # sign-ins at their turn (`hashing_turn`)
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        executor = ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix="bcrypt", initializer=_lower_priority
        )
        object.__setattr__(self, "executor", executor)


def api_threads(cores: int = _CORES) -> int:
    """The API's default: one core fewer than the machine has (at least one), since
    niceness alone does not keep a storm of sign-ins off other requests' latency when
    hashing fills every core (docs/benchmarks.md, sign-in storms)."""
    return max(1, cores - 1)


# Process-global on purpose: the threads share this process's cores whichever app asks,
# and the admin scripts hash with no app at all (every core, no bound); the API's
# lifespan puts its own in place (`hashing_pool`).
_pool = _Pool(_CORES)
# How long a hash may take, waiting included, before its request is a 503: on a CPU that
# other work keeps busy, a low-priority hash must not hold a sign-in open for ever.
HASHING_TIMEOUT_S = 30.0
_in_pool_now = 0  # running or waiting, or sign-ins holding a place (`hashing_slot`)
_holding_slot: ContextVar[bool] = ContextVar("holding_hashing_slot", default=False)


class HashingBusy(DomainError):
    status, code, title = 503, "busy", "Service busy"
    detail = "Too many sign-ins at once; try again in a moment."
    headers = {"Retry-After": "1"}  # noqa: RUF012


@contextlib.contextmanager
def hashing_pool(threads: int, max_waiting: int) -> Iterator[None]:
    """Hash on `threads` threads and refuse hashing (HashingBusy) while more than
    `max_waiting` hashes wait for one; the previous pool is back afterwards (apps may
    nest, as in tests)."""
    global _pool
    previous, _pool = _pool, _Pool(threads, max_waiting, asyncio.Semaphore(threads))
    try:
        yield
    finally:
        mine, _pool = _pool, previous
        mine.executor.shutdown(wait=False, cancel_futures=True)


def cost_of(hashed: str) -> int | None:
    """The bcrypt cost a stored hash was made with (`$2b$12$...` -> 12)."""
    parts = hashed.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


async def hash_password(password: str, rounds: int) -> str:
    return await _in_pool(_hash, password, rounds)


async def verify_password(password: str, hashed: str) -> bool:
    return await _in_pool(_verify, password, hashed)


async def verify_against_dummy(password: str, rounds: int) -> None:
    """Spend the same time as a real check, so unknown accounts cannot be told apart."""
    dummy = await _in_pool(_dummy_hash, rounds)
    await verify_password(password, dummy)


@contextlib.asynccontextmanager
async def hashing_turn() -> AsyncIterator[None]:
    """A place in the pool for a whole sign-in (`hashing_slot`: 503 when too many wait),
    then its turn: as many sign-ins as there are hashing threads do their database work
    and their check at a time, so a storm of sign-ins reaches the database as the pool
    frees up rather than all at once (the database may share the machine's cores; see
    docs/benchmarks.md for why no more get ready). A turn not given within
    `HASHING_TIMEOUT_S` is a 503, like a hash that takes that long."""
    with hashing_slot():
        turns = _pool.turns
        if turns is None:
            yield
            return
        try:
            async with asyncio.timeout(HASHING_TIMEOUT_S):
                await turns.acquire()
        except TimeoutError:
            raise HashingBusy() from None
        try:
            yield
        finally:
            turns.release()


@contextlib.contextmanager
def hashing_slot() -> Iterator[None]:
    """Hold a place in the hashing pool for a whole sign-in, claimed before its database
    work: in a storm, the sign-ins that could not be hashed soon are refused (HashingBusy)
    before they cost the database anything. The hashes inside use this place."""
    global _in_pool_now
    if _holding_slot.get():
        yield
        return
    if _pool.max_waiting is not None and _in_pool_now >= _pool.threads + _pool.max_waiting:
        raise HashingBusy()
    _in_pool_now += 1
    try:
        held = _holding_slot.set(True)
        try:
            yield
        finally:
            _holding_slot.reset(held)
    finally:
        _in_pool_now -= 1


async def _in_pool(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    with hashing_slot():
        loop = asyncio.get_running_loop()
        hashing = loop.run_in_executor(_pool.executor, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.wait_for(hashing, HASHING_TIMEOUT_S)
        except TimeoutError:  # a hash not started yet is cancelled; a running one ends alone
            raise HashingBusy() from None


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def _verify(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8", "surrogatepass"), hashed.encode())
    except ValueError:  # a password over 72 bytes, or a malformed stored hash
        return False


def digest(secret: str) -> str:
    """How a high-entropy token is stored (refresh tokens, emailed tokens): SHA-256, hex.
    Random 256-bit secrets need no slow hash; passwords do (bcrypt, above)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@functools.cache
def _dummy_hash(rounds: int) -> str:
    return _hash(secrets.token_urlsafe(16), rounds)

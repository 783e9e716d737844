"""Password hashing (bcrypt, off the event loop) and the digest of high-entropy tokens.

No routes here: this module is used by the API and the admin scripts alike. The
API bounds how many hashes may wait for the pool (`waiting_limit`): past it, a
request is a 503 with Retry-After instead of a queue that grows without end.
"""

import asyncio
import contextlib
import functools
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import bcrypt

from api.core.errors import DomainError

P = ParamSpec("P")
R = TypeVar("R")

# bcrypt releases the GIL, so a small pool keeps hashing off the event loop
# without letting a burst of logins queue unbounded CPU work.
_WORKERS = os.cpu_count() or 2
_hash_pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="bcrypt")
_max_waiting: int | None = None  # hashes that may wait for a free thread; None: any number
_in_pool_now = 0  # running or waiting


class HashingBusy(DomainError):
    status, code, title = 503, "busy", "Service busy"
    detail = "Too many sign-ins at once; try again in a moment."
    headers = {"Retry-After": "1"}  # noqa: RUF012


@contextlib.contextmanager
def waiting_limit(max_waiting: int) -> Iterator[None]:
    """Refuse hashing (HashingBusy) while more than `max_waiting` hashes wait; the
    previous limit is back afterwards (apps may nest, as in tests)."""
    global _max_waiting
    previous, _max_waiting = _max_waiting, max_waiting
    try:
        yield
    finally:
        _max_waiting = previous


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


async def _in_pool(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    global _in_pool_now
    if _max_waiting is not None and _in_pool_now >= _WORKERS + _max_waiting:
        raise HashingBusy()
    _in_pool_now += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_hash_pool, functools.partial(fn, *args, **kwargs))
    finally:
        _in_pool_now -= 1


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

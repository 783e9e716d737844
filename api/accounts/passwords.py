"""Password hashing (bcrypt, off the event loop) and the digest of high-entropy tokens.

No FastAPI here: this module is used by the API and the admin scripts alike.
"""

import asyncio
import functools
import hashlib
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import bcrypt

P = ParamSpec("P")
R = TypeVar("R")

# bcrypt releases the GIL, so a small pool keeps hashing off the event loop
# without letting a burst of logins queue unbounded CPU work.
_hash_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="bcrypt")


async def hash_password(password: str, rounds: int) -> str:
    return await _in_pool(_hash, password, rounds)


async def verify_password(password: str, hashed: str) -> bool:
    return await _in_pool(_verify, password, hashed)


async def verify_against_dummy(password: str, rounds: int) -> None:
    """Spend the same time as a real check, so unknown accounts cannot be told apart."""
    dummy = await _in_pool(_dummy_hash, rounds)
    await verify_password(password, dummy)


async def _in_pool(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hash_pool, functools.partial(fn, *args, **kwargs))


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

"""Sign-in storm (scripts/bench --storm N): does hashing starve everything else?

N logins at once, each a real bcrypt check at the app's BCRYPT_ROUNDS, while a probe
asks for `/health` at a steady pace. The floor is the same probe against the same
process at rest, just before. Prints p50/p99 of both, the ratio (target: p99 within
2x of idle), and how the logins were answered: 200s, and 503s with Retry-After once
more than BCRYPT_MAX_WAITING hashes would have queued.
"""

import asyncio
import multiprocessing
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import bcrypt
import httpx2
from bson import ObjectId
from pymongo import AsyncMongoClient

from bench.harness import DB, Setup

PROBE_EVERY_S = 0.01
IDLE_S = 4.0
PASSWORD = "Storm-pass-1"
# The app's BCRYPT_ROUNDS (the harness passes the environment on): `BCRYPT_ROUNDS=4`
# makes hashing nearly free, which shows what the storm costs without it.
ROUNDS = int(os.environ.get("BCRYPT_ROUNDS", "12"))


def report(setup: Setup, logins: int, rounds: int) -> None:
    asyncio.run(_report(setup, logins, rounds))


async def _report(setup: Setup, logins: int, rounds: int) -> None:
    await _seed_storm_users(setup.mongodb_url, logins * rounds)
    base = setup.targets["app"]
    idle: list[float] = []
    during: list[float] = []
    answers: list[int] = []
    took: list[float] = []
    loop = asyncio.get_running_loop()
    # The storm comes from another process, so its replies do not delay the probe's.
    spawn = multiprocessing.get_context("spawn")
    async with httpx2.AsyncClient(base_url=base, timeout=60) as probe:
        with ProcessPoolExecutor(1, mp_context=spawn) as other:
            await loop.run_in_executor(other, time.sleep, 0)  # started before measuring
            for round_ in range(rounds):  # interleaved, so drift hits both alike
                idle += await _probe(probe, until=_after(IDLE_S))
                started = time.monotonic()
                first = round_ * logins
                storm = loop.run_in_executor(other, _storm, base, range(first, first + logins))
                during += await _probe(probe, until=storm)
                answers += await storm
                took.append(time.monotonic() - started)
    print(f"\n{rounds} rounds of {logins} logins at once (bcrypt cost {ROUNDS}), /health "
          f"probed every {PROBE_EVERY_S * 1000:.0f} ms; a storm took "
          f"{statistics.median(took):.1f}s (median)")  # fmt: skip
    print(f"logins answered: {dict(sorted(Counter(answers).items()))}")
    print(f"{'/health':<14}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, samples in (("idle (floor)", idle), ("during storm", during)):
        p50, p99 = _percentiles(samples)
        print(f"{label:<14}{len(samples):>9}{p50:>9.1f}{p99:>9.1f}{max(samples):>9.1f}")
    ratio = _percentiles(during)[1] / _percentiles(idle)[1]
    print(f"p99 storm/idle: {ratio:.2f} (target <= 2.00)")


def _after(seconds: float) -> asyncio.Future[None]:
    return asyncio.ensure_future(asyncio.sleep(seconds))


async def _probe(client: httpx2.AsyncClient, until: asyncio.Future[Any]) -> list[float]:
    """Milliseconds per `/health`, one request every PROBE_EVERY_S, until `until` is done."""
    samples: list[float] = []
    while not until.done():
        started = time.perf_counter()
        response = await client.get("/health")
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
        await asyncio.sleep(max(0.0, PROBE_EVERY_S - samples[-1] / 1000))
    return samples


def _storm(base: str, accounts: range) -> list[int]:
    """One sign-in to each of `accounts`, all at once; their statuses."""

    async def storm() -> list[int]:
        limits = httpx2.Limits(max_connections=len(accounts))
        async with httpx2.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            return list(await asyncio.gather(*(_login(client, n) for n in accounts)))

    return asyncio.run(storm())


async def _login(client: httpx2.AsyncClient, n: int) -> int:
    form = {"username": f"storm{n}", "password": PASSWORD}
    response = await client.post("/api/v1/auth/login", data=form)
    if response.status_code == 503:
        assert "retry-after" in response.headers, response.headers
    return response.status_code


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


async def _seed_storm_users(url: str, count: int) -> None:
    """`count` accounts, one login each (a burst at one account from one address is held
    to its failure limit before any check); hashes already at the app's cost, so no
    login re-hashes."""
    hashed = await asyncio.to_thread(bcrypt.hashpw, PASSWORD.encode(), bcrypt.gensalt(ROUNDS))
    now = datetime.now(UTC).replace(microsecond=0)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    async with client:
        await client[DB].users.insert_many([_user(n, hashed.decode(), now) for n in range(count)])


def _user(n: int, hashed: str, now: datetime) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "email": f"storm{n}@example.com",
        "username": f"storm{n}",
        "full_name": None,
        "hashed_password": hashed,
        "is_active": True,
        "is_superuser": False,
        "email_verified": False,
        "token_version": 0,
        "session_ids": [],
        "created_at": now,
        "updated_at": now,
    }

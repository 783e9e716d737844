"""Nobody unknown makes the server read or parse much: a route that needs a login
refuses an unauthenticated body before reading it, any other holds it to 64 KiB, and a
socket's first message is held to what a token needs. Measured on a real
`python -m api.server` process: its resident memory (from /proc) and how fast `/health`
answers while the attack runs."""

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.serving import api_env, running_api

BATCH = "/api/v1/items/batch"
WS_PATH = "/api/v1/ws/items"
MiB = 1024 * 1024


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def under_attack(base: str, pid: int, attack: Awaitable[object]) -> tuple[float, int]:
    """The slowest `/health` answer and the most the process's resident memory grew,
    sampled every 50 ms while `attack` runs."""
    job = asyncio.ensure_future(attack)
    before = resident_bytes(pid)
    slowest, grown = 0.0, 0
    async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
        while not job.done():
            started = time.perf_counter()
            assert (await client.get("/health")).status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            grown = max(grown, resident_bytes(pid) - before)
            await asyncio.sleep(0.05)
    await job
    return slowest, max(grown, resident_bytes(pid) - before)


def unharmed(attack: str, slowest: float, grown: int) -> None:
    """`/health` kept answering within 500 ms, and the process grew by under 64 MiB."""
    print(f"\n{attack}: /health {slowest:.2f} s, grown {grown / MiB:.0f} MiB")
    assert slowest < 0.5, f"/health took {slowest:.2f} s during the attack"
    assert grown < 64 * MiB, f"the process grew by {grown / MiB:.0f} MiB"


def nested_arrays(size: int) -> bytes:
    """`{"operations": [[], [], ...]}` of about `size` bytes: cheap to send, dear to parse."""
    return b'{"operations": [' + b"[]," * (size // 3 - 10) + b"[]]}"


# Each attack: where, how big a body, how many at once, and the answer each gets.
ATTACKS = {
    # The batch may be 8 MiB, for a known caller: an unknown one is asked first.
    "batch": (BATCH, 8 * MiB - 1024, 4, 401),
    # Any route that needs a login: a 1 MiB body (MAX_BODY_BYTES) is not read either.
    "item": ("/api/v1/items", MiB - 1024, 40, 401),
    # A route anyone may use holds an unknown caller's body to 64 KiB.
    "sign-up": ("/api/v1/users", MiB - 1024, 40, 413),
}


@pytest.mark.parametrize("attack", ATTACKS)
async def test_an_unknown_caller_cannot_make_the_server_parse_a_big_body(
    attack: str, mongodb_url: str, tmp_path: Path
) -> None:
    path, size, at_once, status = ATTACKS[attack]
    env = api_env(mongodb_url, "unknown_body", tmp_path)
    async with running_api(env) as (base, process):
        body = nested_arrays(size)
        json_type = {"Content-Type": "application/json"}
        async with httpx2.AsyncClient(base_url=base, timeout=60) as client:
            # Warm up (the first request loads what every request uses), then measure.
            await client.post(path, content=b"{}", headers=json_type)

            async def flood() -> list[int]:
                sent = [client.post(path, content=body, headers=json_type) for _ in range(at_once)]
                return [response.status_code for response in await asyncio.gather(*sent)]

            job = asyncio.ensure_future(flood())
            slowest, grown = await under_attack(base, process.pid, job)
            assert job.result() == [status] * at_once
        unharmed(attack, slowest, grown)


async def test_a_huge_first_message_is_refused_as_it_arrives(
    mongodb_url: str, tmp_path: Path
) -> None:
    env = api_env(mongodb_url, "unknown_socket", tmp_path, LIVE_FEED="true")
    async with running_api(env) as (base, process):
        url = base.replace("http", "ws") + WS_PATH
        message = "[" + "[]," * (16 * MiB // 3 - 10) + "[]]"
        async with connect(url) as ws:  # warm up: a socket refused the ordinary way
            await ws.send('{"type": "auth", "token": "nope"}')
            with pytest.raises(ConnectionClosed):
                await ws.recv()

        async def attack() -> list[int | None]:
            async def one() -> int | None:
                async with connect(url, max_size=None) as ws:
                    try:
                        await ws.send(message)
                        await ws.recv()
                    except ConnectionClosed as closed:
                        return closed.rcvd.code if closed.rcvd else None
                return None

            return list(await asyncio.gather(*(one() for _ in range(3))))

        job = asyncio.ensure_future(attack())
        slowest, grown = await under_attack(base, process.pid, job)
        unharmed("socket", slowest, grown)
        assert set(job.result()) <= {1009, None}  # too big (or the peer cut before saying so)


async def test_a_deeply_nested_first_message_is_a_clear_refusal(
    mongodb_url: str, tmp_path: Path
) -> None:
    env = api_env(mongodb_url, "unknown_nested", tmp_path, LIVE_FEED="true")
    async with running_api(env) as (base, _):
        url = base.replace("http", "ws") + WS_PATH
        for message, reason in [
            ("[" * 3000, 'the first message must be {"type": "auth", "token": "..."}'),
            ("[" * 5000, "the first message may be at most 4096 characters"),
        ]:
            async with connect(url) as ws:
                await ws.send(message)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, reason)

"""Password hashing off the event loop, and access tokens."""

import asyncio
import threading
import time
from pathlib import Path

import pytest

from api.accounts import passwords
from api.accounts.passwords import hash_password, verify_against_dummy, verify_password
from api.accounts.tokens import InvalidToken, TokenSigner


async def test_hash_and_verify() -> None:
    hashed = await hash_password("Abcdefg-1", 4)
    assert hashed.startswith("$2b$04$")
    assert await verify_password("Abcdefg-1", hashed)
    assert not await verify_password("Abcdefg-2", hashed)
    assert not await verify_password("Abcdefg-1", "not-a-hash")


async def test_hashing_does_not_block_the_event_loop() -> None:
    # While a cost-12 hash runs, the loop keeps ticking (it runs in a thread).
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await hash_password("Abcdefg-1", 12)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert ticks >= elapsed / 0.01 * 0.5


async def test_unknown_user_check_runs_bcrypt() -> None:
    await verify_against_dummy("whatever", 4)  # warm the cached dummy hash
    started = time.perf_counter()
    await verify_against_dummy("whatever", 10)
    assert time.perf_counter() - started > 0.01  # real bcrypt work, not a shortcut


def test_tokens_round_trip_and_reject_tampering() -> None:
    signer = TokenSigner("k" * 40, "iss", "aud", 60)
    token = signer.issue("0123456789abcdef01234567", 3, "session-1")
    claims = signer.verify(token)
    assert (claims.user_id, claims.token_version, claims.session_id) == (
        "0123456789abcdef01234567",
        3,
        "session-1",
    )
    header, payload, signature = token.split(".")
    for bad in (f"{header}.{payload}.", f"{header}.{payload}x.{signature}", token + "x", ""):
        with pytest.raises(InvalidToken):
            signer.verify(bad)


def test_key_id_identifies_the_secret() -> None:
    assert TokenSigner("a" * 40, "i", "a", 60).kid != TokenSigner("b" * 40, "i", "a", 60).kid
    assert TokenSigner("a" * 40, "i", "a", 60).kid == TokenSigner("a" * 40, "x", "y", 1).kid


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux thread priorities")
async def test_hashing_runs_below_the_event_loops_priority() -> None:
    """A storm of sign-ins must take the idle CPU, not the loop's: the pool's threads run
    at the lowest priority and the loop's thread at its own."""
    await hash_password("Abcdefg-1", 4)  # the pool has started a thread

    def niceness(native_id: int | None) -> int:
        stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[16])

    hashing = [t.native_id for t in threading.enumerate() if t.name.startswith("bcrypt")]
    assert hashing
    assert {niceness(native_id) for native_id in hashing} == {passwords.HASHING_NICENESS}
    assert niceness(threading.get_native_id()) < passwords.HASHING_NICENESS


async def test_a_hash_that_cannot_finish_in_time_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU other work keeps busy, a low-priority hash must not hold a request open."""
    monkeypatch.setattr(passwords, "HASHING_TIMEOUT_S", 0.01)
    with pytest.raises(passwords.HashingBusy):
        await hash_password("Abcdefg-1", 14)

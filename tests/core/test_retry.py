"""The one retry helper: attempts at once then after growing, jittered delays, bounded by
a count or a deadline."""

from types import SimpleNamespace

import pytest

from api.core import retry
from api.core.retry import Retry


def test_delays_double_up_to_the_most_within_their_jitter() -> None:
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (8, 5.0)):
        for _ in range(50):
            assert ceiling / 2 <= retry.delay(attempt, 0.1, 5.0) <= ceiling
            assert 0 <= retry.delay(attempt, 0.1, 5.0, full=True) <= ceiling


async def test_tries_bound_the_attempts_and_the_first_waits_for_nothing() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    attempts = [a async for a in Retry(0.01, 0.04, tries=4, sleep=sleep)]
    assert attempts == [0, 1, 2, 3]
    assert len(slept) == 3  # between attempts, never before the first
    assert all(0.005 <= s <= 0.04 for s in slept)


async def test_a_budget_ends_the_loop_by_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]

    def ticking() -> float:
        clock[0] += 1.0
        return clock[0]

    async def sleep(seconds: float) -> None:
        pass

    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=ticking))
    attempts = [a async for a in Retry(0.01, 0.01, budget_s=5, sleep=sleep)]
    assert attempts == [0, 1, 2, 3, 4]


async def test_reset_starts_the_delays_over() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Retry(1.0, 100.0, tries=5, sleep=sleep)
    async for attempt in backoff:
        if attempt == 3:
            backoff.reset()
    assert slept[2] >= 2.0  # the third delay: 4 s with its jitter
    assert slept[3] <= 1.0  # after the reset: the first delay again

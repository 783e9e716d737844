"""One way to try again: exponential backoff with jitter, within a deadline or a count.

Every loop that retries uses it: a write that lost a compare-and-swap race, a request
waiting on another's idempotency key, a throttle counter opened concurrently, the live
feed's watcher and the embedded server's supervisor reopening after a failure, and the
durable queue's next attempt (`delay`, from the attempts a message has stored).
Jitter spreads out the retries of many clients that failed together.
"""

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable


def delay(attempt: int, first_s: float, most_s: float = math.inf, full: bool = False) -> float:
    """The wait before retry number `attempt` (1, 2, ...): `first_s` doubled each time,
    at most `most_s`, drawn at random from its upper half (from all of it when `full`)."""
    ceiling = min(most_s, first_s * 2 ** min(attempt - 1, 30))
    return random.uniform(0 if full else ceiling / 2, ceiling)


class Retry:
    """`async for attempt in Retry(...)`: attempt 0 at once, then each after a backoff
    delay, until `tries` attempts or `budget_s` seconds have passed (none: forever). The
    loop's body returns or breaks when an attempt succeeds; a loop that runs out ends.
    `sleep` may be a wakeable pause (a background task's), `reset()` starts the delays
    over (a stream that stayed up a while failed for a new reason)."""

    def __init__(
        self,
        first_s: float,
        most_s: float,
        *,
        budget_s: float | None = None,
        tries: int | None = None,
        full_jitter: bool = False,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.first_s, self.most_s, self.full_jitter = first_s, most_s, full_jitter
        self.tries, self.sleep = tries, sleep
        self.deadline = None if budget_s is None else time.monotonic() + budget_s
        self.failures = 0  # failed attempts since the start, or since `reset`
        self._attempt = 0

    def reset(self) -> None:
        self.failures = 0

    @property
    def remaining_s(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def __aiter__(self) -> "Retry":
        self._attempt = 0  # each loop over it starts with an attempt at once
        return self

    async def __anext__(self) -> int:
        attempt = self._attempt
        if attempt:
            self.failures += 1
            if self.tries is not None and attempt >= self.tries:
                raise StopAsyncIteration
            remaining = self.remaining_s  # the clock read once a round
            if remaining <= 0:
                raise StopAsyncIteration
            wait = delay(self.failures, self.first_s, self.most_s, self.full_jitter)
            if wait > 0:
                await self.sleep(min(wait, remaining))
        self._attempt += 1
        return attempt

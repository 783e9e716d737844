"""Long-running tasks of the app (the outbox worker, the live feed's watcher).

They stop between steps, never by cancellation in the middle of a database call:
cancelling a task inside a PyMongo network read left the connection waiting for a
reply that never came (seen here as a test run hanging in the app's shutdown, in a
change stream's cleanup after its getMore was cancelled). So `stop()` asks, wakes the
task, and waits for it; only a task that does not finish in time is cancelled.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("docstore")
T = TypeVar("T")


class Background:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = False
        self.wake = asyncio.Event()  # cuts a pause short (new work, or stop)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.stopping = False
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def run(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    async def pause(self, seconds: float) -> None:
        """Wait up to `seconds`, less when woken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()

    def ask_to_stop(self) -> None:
        """Ask `run` to finish (from its own loop), without waiting for it."""
        self.stopping = True
        self.wake.set()

    async def stop(self, grace_s: float = 15.0) -> None:
        self.ask_to_stop()
        if self._task is None:
            return
        done, _ = await asyncio.wait([self._task], timeout=grace_s)
        if not done:
            log.warning("%s did not stop within %g s; cancelling it", self.name, grace_s)
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None


async def uninterrupted(
    awaitable: Awaitable[T], abandoned: Callable[[T], Awaitable[object]] | None = None
) -> T:
    """Await a database call that a cancellation must not cut off mid-reply (see above):
    when the caller is cancelled, the call still finishes first, then the caller stops.
    `abandoned` cleans up what the call produced for a caller no longer there."""
    call = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        await asyncio.wait([call])
        if not call.cancelled() and call.exception() is None and abandoned is not None:
            await abandoned(call.result())
        raise

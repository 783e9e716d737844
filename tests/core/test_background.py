"""Background tasks stop between steps, and calls awaited `uninterrupted` finish."""

import asyncio

import pytest

from api.core.background import Background, uninterrupted


class Steps(Background):
    """Each step takes a while and must never be cut off halfway."""

    def __init__(self) -> None:
        super().__init__("steps")
        self.started = self.finished = 0

    async def run(self) -> None:
        while not self.stopping:
            self.started += 1
            await asyncio.sleep(0.05)
            self.finished += 1
            await self.pause(10)  # until woken


async def test_stop_waits_for_the_step_in_progress() -> None:
    steps = Steps()
    steps.start()
    await asyncio.sleep(0.01)  # inside the first step
    await steps.stop()
    assert steps.started == steps.finished == 1


async def test_a_pause_is_cut_short_by_stop() -> None:
    steps = Steps()
    steps.start()
    await asyncio.sleep(0.1)  # the step is done; the task pauses for 10 s
    async with asyncio.timeout(1):
        await steps.stop()


async def test_a_cancelled_caller_lets_the_call_finish_and_cleans_up() -> None:
    finished, cleaned = asyncio.Event(), []

    async def call() -> str:
        await asyncio.sleep(0.05)
        finished.set()
        return "stream"

    async def clean(result: str) -> None:
        cleaned.append(result)

    caller = asyncio.create_task(uninterrupted(call(), abandoned=clean))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished.is_set()  # it was not cut off
    assert cleaned == ["stream"]

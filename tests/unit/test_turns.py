"""core/turns.py: long conversions give the event loop back between slices."""

from __future__ import annotations

import asyncio
import time

from jobtrail.core import turns


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_a_long_conversion_lets_other_work_run_between_its_slices() -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    def slow(n: int) -> int:
        _busy(0.00005)  # 200 items: 10 ms, 50 slices
        return n * 2

    other = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    began = ticks
    result = await turns.each(range(200), slow)
    done.set()
    await other
    assert [n * 2 for n in range(200)] == result
    assert ticks - began >= 20, "the other task ran only between slices of SLICE seconds"


async def test_a_short_conversion_runs_in_one_go() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    began = ticks
    assert ["a", "b", "c"] == await turns.each("abc", str)
    assert ticks == began, "three cheap items are not worth a pause"
    other.cancel()

"""Stopping on SIGINT and SIGTERM, even when the event loop's self-pipe is full."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stopping_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` while inside; the defaults are put back after.

    asyncio learns of a signal from a byte the signal writes into the loop's self-pipe
    (`add_signal_handler`), and the byte is dropped when the pipe is full, as it is after
    a burst of wake-ups from threads (one per read a reader thread answers): with 500
    event streams open, a SIGTERM was lost now and then and `jobtrail serve` never
    stopped (bench/stream, killed after 120 s). So the signal's Python handler asks the
    loop as well. The self-pipe still wakes a loop that waits for nothing; a pipe too
    full to take the byte has the loop awake anyway, and the handler runs on its thread.
    """
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)  # the self-pipe as the signal's wake-up
        signal.signal(sig, handler)  # in place of asyncio's handler, which does nothing
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)

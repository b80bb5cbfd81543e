"""`jobtrail serve` stops on SIGTERM even when the event loop's self-pipe is full, as a
burst of wake-ups from threads leaves it: asyncio hears of a signal only through a byte in
that pipe, and the byte is dropped when the pipe is full."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import aiohttp
import pytest

from jobtrail.core.settings import load
from jobtrail.receiver.serve import serve
from tests.e2e.helpers import free_port


async def _until_up(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the server did not come up")


# CPython reports the byte it could not write ("Exception ignored when trying to write to
# the signal wakeup fd"): the very condition this test makes.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_sigterm_stops_the_server_when_the_loops_self_pipe_is_full(tmp_path: Path) -> None:
    port = free_port()
    env = {"JOBTRAIL_DATA_DIR": str(tmp_path), "JOBTRAIL_PORT": str(port), "JOBTRAIL_LOG_LEVEL": "warning"}
    serving = asyncio.create_task(serve(load(None, env)))
    await _until_up(port)
    loop = asyncio.get_running_loop()

    def wake_ups_then_sigterm() -> None:
        for _ in range(20_000):  # far more than the pipe holds: the rest are dropped
            loop.call_soon_threadsafe(lambda: None)
        os.kill(os.getpid(), signal.SIGTERM)

    def hold_the_loop() -> None:  # the loop reads nothing from its pipe meanwhile
        burst = threading.Thread(target=wake_ups_then_sigterm)
        burst.start()
        burst.join()

    loop.call_soon(hold_the_loop)
    await asyncio.wait_for(serving, timeout=30)  # serve() returned: the SIGTERM was heard
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the handlers are put back"

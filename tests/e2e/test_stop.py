"""`jobtrail serve` stops at once on SIGTERM, event streams open or not (issue 19, #5)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import free_port, start_serve

pytestmark = pytest.mark.slow


async def test_sigterm_with_an_event_stream_open_stops_the_server(tmp_path: Path) -> None:
    """Regression: with one `/api/events` subscriber, SIGTERM did not stop the server in
    40-100 s; the systemd unit allows 30, so every restart ended in SIGKILL."""
    port = free_port()
    env = {"JOBTRAIL_PORT": str(port), "JOBTRAIL_DATA_DIR": str(tmp_path)}
    process = await asyncio.to_thread(start_serve, env, tmp_path / "serve.log")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: a\r\n\r\n")
        await reader.readuntil(b"retry: 2000\n\n")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 25)  # a guard: the old code took 40 s or more
        took = time.monotonic() - started
        assert 0 == code, (tmp_path / "serve.log").read_text()
        await asyncio.wait_for(reader.read(), 5)  # the stream was ended: its end is read
        print(f"stopped in {took:.2f} s with a stream open")
        writer.close()
    finally:
        if process.poll() is None:
            process.kill()

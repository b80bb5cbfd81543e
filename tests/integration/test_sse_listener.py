"""The SSE listener against a real server on a loopback socket that misbehaves on purpose.

One test per case of SSE.md's list (13, the gap, is in test_pollers.py). The listener's
sleep is replaced by one that records the wait and yields briefly, so backoff values are
checked exactly without waiting for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import pytest

from jobtrail.listeners.sse import SSEListener
from jobtrail.listeners.sse_decoder import SSEEvent
from jobtrail.providers.replies import HttpCall
from jobtrail.runtime.health import Component, State
from tests.integration.sse_server import Script, ScriptedServer, answer, stream


class Harness:
    def __init__(self, scripts: Sequence[Script], **options: Any) -> None:
        self.server = ScriptedServer(scripts)
        self.options = {"rand": lambda: 0.0, **options}
        self.events: list[SSEEvent] = []
        self.delays: list[float] = []
        self.reasons: list[str | None] = []
        self.connects = 0
        self.component = Component("oxen.sse", "sse")

    async def __aenter__(self) -> Harness:
        url = await self.server.start()
        self.session = aiohttp.ClientSession()
        self.listener = SSEListener(
            HttpCall("GET", url, {"Authorization": "Bearer sk-test"}),
            self._handle,
            self.component,
            self.session,
            on_connect=self._connected,
            sleep=self._sleep,
            **self.options,
        )
        self.task = asyncio.create_task(self.listener.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.session.close()
        await self.server.close()

    async def _handle(self, events: Sequence[SSEEvent]) -> None:
        self.events.extend(events)

    def _connected(self) -> None:
        self.connects += 1

    async def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.reasons.append(self.component.reason)
        await asyncio.sleep(0.005)

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async def poll() -> None:
            while not condition():
                await asyncio.sleep(0.005)

        await asyncio.wait_for(poll(), timeout)

    @property
    def datas(self) -> list[str]:
        return [e.data for e in self.events]


def hang(*chunks: bytes, pause: float = 0.02) -> Script:
    return stream(*chunks, pause=pause, then="hang")


async def test_line_endings_crlf_and_utf8_split_across_tcp_reads() -> None:
    """Case 1: LF, CRLF, CR; a CR|LF pair and a UTF-8 sequence split between writes."""
    chunks = [b"data: a\r", b"\n\r\n", b"data: \xc3", b"\xa9\r\r", b"data: c\n\n"]
    async with Harness([hang(*chunks)]) as h:
        await h.until(lambda: len(h.events) >= 3)
    assert ["a", "é", "c"] == h.datas


async def test_one_byte_writes() -> None:
    """Case 1: a stream written one byte at a time."""
    raw = b'event: media_generation_completed\r\ndata: {"x": 1}\r\n\r\n'
    async with Harness([hang(*[raw[i : i + 1] for i in range(len(raw))], pause=0.001)]) as h:
        await h.until(lambda: len(h.events) >= 1)
    assert [SSEEvent("media_generation_completed", '{"x": 1}', "")] == h.events


async def test_a_leading_bom_split_across_writes_is_stripped_once() -> None:
    """Case 2."""
    async with Harness([hang(b"\xef\xbb", b"\xbfdata: first\n\n", b"\xef\xbb\xbfdata: second\n\n")]) as h:
        await h.until(lambda: len(h.events) >= 1)
        await asyncio.sleep(0.1)
    assert ["first"] == h.datas


async def test_heartbeats_and_a_comment_after_an_event_with_an_id_make_no_events() -> None:
    """Case 3: httpx-sse would yield a phantom empty event here (its issue #35)."""
    async with Harness(
        [hang(b": keep-alive\n\n", b"id: 1\ndata: x\n\n", b": keep-alive\n\n", b":\n\n")]
    ) as h:
        await h.until(lambda: len(h.events) >= 1)
        await asyncio.sleep(0.15)
    assert [SSEEvent("message", "x", "1")] == h.events


async def test_blocks_with_only_an_id_or_only_retry_dispatch_nothing() -> None:
    """Case 4: no empty events; the id still counts for Last-Event-ID."""
    async with Harness([stream(b"id: 5\n\n", b"retry: 1000\n\n", b"data: after\n\n"), hang()]) as h:
        await h.until(lambda: len(h.server.requests) >= 2)
    assert [SSEEvent("message", "after", "5")] == h.events
    assert "5" == h.server.requests[1].get("last-event-id")


async def test_a_valid_retry_raises_the_reconnect_delay() -> None:
    """Case 5: `retry: 4000` makes the next wait at least 4 s."""
    async with Harness([stream(b"retry: 4000\n\n"), hang()]) as h:
        await h.until(lambda: len(h.delays) >= 1)
    assert 4.0 == h.delays[0]


async def test_bogus_retry_values_are_ignored() -> None:
    """Case 5: `-99999`, ` 99999` (two spaces) and `99_999` are not ASCII digits."""
    async with Harness(
        [stream(b"retry: -99999\n\n", b"retry:  99999\n\n", b"retry: 99_999\n\n"), hang()]
    ) as h:
        await h.until(lambda: len(h.delays) >= 1)
    assert 1.0 == h.delays[0]
    assert h.listener.server_retry is None


async def test_an_unterminated_final_event_is_discarded() -> None:
    """Case 6."""
    async with Harness([stream(b"data: complete\n\n", b"data: partial"), hang()]) as h:
        await h.until(lambda: len(h.server.requests) >= 2)
        await asyncio.sleep(0.05)
    assert ["complete"] == h.datas


async def test_a_clean_end_of_stream_reconnects_with_last_event_id() -> None:
    """Case 7: the first request has no Last-Event-ID, the second carries the id seen."""
    async with Harness([stream(b"id: 42\ndata: x\n\n"), hang()]) as h:
        await h.until(lambda: len(h.server.requests) >= 2)
    first, second = h.server.requests[:2]
    assert "last-event-id" not in first
    assert "42" == second["last-event-id"]
    assert "Bearer sk-test" == second["authorization"]
    assert "text/event-stream" == second["accept"]
    assert ["the server ended the stream"] == h.reasons


async def test_a_reset_mid_event_reconnects_and_drops_the_partial_event() -> None:
    """Case 8."""
    reset = stream(b"data: full\n\n", b"data: half", pause=0.05, then="reset")
    async with Harness([reset, hang()]) as h:
        await h.until(lambda: h.connects >= 2)
    assert ["full"] == h.datas
    assert h.reasons[0] is not None and h.reasons[0].startswith("connection failed")


async def test_a_stall_longer_than_the_read_timeout_reconnects() -> None:
    """Case 9: no byte for `read_timeout` is a dead connection."""
    async with Harness([hang(b"data: a\n\n"), hang()], read_timeout=0.3) as h:
        await h.until(lambda: len(h.server.requests) >= 2)
    assert h.reasons[0] is not None and "read timeout" in h.reasons[0]


async def test_heartbeats_keep_a_quiet_stream_alive() -> None:
    """Case 9: comments every 0.1 s under a 1 s read timeout: one connection throughout."""
    beats = [b": keep-alive\n\n"] * 15
    async with Harness([stream(*beats, pause=0.1, then="end"), hang()], read_timeout=1.0) as h:
        await h.until(lambda: len(h.server.requests) >= 2)
    assert ["the server ended the stream"] == h.reasons


async def test_401_is_no_hot_loop_and_is_reported() -> None:
    """Case 10: every wait after a refused key is the long auth pause; health says why."""
    async with Harness([answer(401, body=b'{"error":"bad key"}')], auth_pause=600.0) as h:
        await h.until(lambda: len(h.delays) >= 3)
        assert State.FAILED == h.component.state
        assert not h.component.healthy
    assert [600.0, 600.0, 600.0] == h.delays[:3]
    assert h.reasons[0] is not None and "401" in h.reasons[0]
    assert 0 == h.connects


async def test_429_retry_after_is_honoured() -> None:
    """Case 10."""
    async with Harness([answer(429, {"Retry-After": "7"}), hang()]) as h:
        await h.until(lambda: h.connects >= 1)
    assert 7.0 == h.delays[0]


async def test_5xx_backoff_stays_within_the_jitter_bounds_and_the_cap() -> None:
    """Case 10: wait n is in [d/2, d] with d = min(30, 2**n), real randomness."""
    async with Harness([answer(503)], rand=__import__("random").random) as h:
        await h.until(lambda: len(h.delays) >= 8)
    for n, wait in enumerate(h.delays[:8]):
        ceiling = min(30.0, 2.0**n)
        assert ceiling / 2 <= wait <= ceiling, (n, wait)


async def test_backoff_resets_after_a_stable_connection() -> None:
    """Case 10: failures grow the wait; a connection that stayed up resets it."""
    stable = stream(b"data: x\n\n", b": hb\n\n", b": hb\n\n", pause=0.2)
    scripts = [answer(500), answer(500), answer(500), stable, answer(500), hang()]
    async with Harness(scripts, stable_after=0.3) as h:
        await h.until(lambda: len(h.delays) >= 5)
    assert [1.0, 2.0, 4.0, 1.0, 2.0] == h.delays[:5]


async def test_204_stops_the_stream_and_reports_it() -> None:
    """Case 11."""
    async with Harness([answer(204)]) as h:
        await asyncio.wait_for(h.task, 5)
        assert State.STOPPED == h.component.state
    assert 1 == len(h.server.requests)
    assert h.component.reason is not None and "204" in h.component.reason


async def test_a_wrong_content_type_is_never_parsed() -> None:
    """Case 11."""
    async with Harness([answer(200, {"Content-Type": "text/html"}, b"data: x\n\n")]) as h:
        await h.until(lambda: len(h.delays) >= 2)
    assert [] == h.events
    assert h.reasons[0] is not None and "content type" in h.reasons[0]


async def test_a_multi_megabyte_event_arrives_whole() -> None:
    """Case 12: 6 MiB of data, in 512 KiB lines."""
    raw = (b"data: " + b"y" * (512 * 1024) + b"\n") * 12 + b"\n"
    chunks = [raw[i : i + 65536] for i in range(0, len(raw), 65536)]
    async with Harness([hang(*chunks, pause=0.0)]) as h:
        await h.until(lambda: len(h.events) >= 1)
    assert 12 * 512 * 1024 + 11 == len(h.events[0].data)


async def test_a_line_over_one_mebibyte_drops_the_connection_with_the_reason() -> None:
    """Memory stays bounded whatever the server sends: the connection is made again, and
    /readyz says why."""
    endless = b"data: " + b"z" * (1024 * 1024 + 1)
    async with Harness([hang(endless, pause=0.0), hang(b"data: after\n\n")]) as h:
        await h.until(lambda: len(h.events) >= 1)
    assert ["after"] == [e.data for e in h.events]
    assert h.reasons[0] is not None and "protocol error: a line longer than" in h.reasons[0]


async def test_cancelling_leaves_no_connection_or_task_open() -> None:
    """Case 14: the server sees the client go away; no task of ours is left."""
    before = asyncio.all_tasks()
    harness = Harness([hang(b"data: a\n\n")])
    async with harness as h:
        await h.until(lambda: len(h.events) >= 1)
        assert 1 == h.server.open_connections
    await harness.until(lambda: harness.server.open_connections == 0)
    assert set() == {t for t in asyncio.all_tasks() - before if not t.done()} - {asyncio.current_task()}


@pytest.mark.parametrize("status", [400, 408, 500, 502, 404])
async def test_other_error_statuses_back_off_and_retry(status: int) -> None:
    async with Harness([answer(status), hang()]) as h:
        await h.until(lambda: h.connects >= 1)
    assert [1.0] == h.delays
    assert h.reasons[0] == f"HTTP {status}"

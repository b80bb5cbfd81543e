"""The SSE listener: one long-lived stream, reconnected forever, following SSE.md.

    while not cancelled: connect, consume, back off

- Backoff: `Backoff` (1 s doubling to 30 s, jittered to [d/2, d]); a server `retry:`
  raises the floor (capped at 5 min), `Retry-After` on an error answer is honoured;
  the count resets once a connection stayed up `stable_after` seconds.
- Read timeout: no byte for `read_timeout` seconds (about 3-4 heartbeats) is a dead
  connection. A clean end of stream, a reset, a timeout: all reconnect.
- 401/403: no hot loop. Marked failed in `/readyz` and retried only every
  `auth_pause` seconds (the pollers keep the jobs moving meanwhile). 204: stop for good.
  A wrong content type is never parsed.
- A line over 1 MiB (or an event over 16 MiB) is a protocol error: the connection is
  dropped and made again, with the reason in `/readyz`.
- `Last-Event-ID` is sent when an id is known; it only advances once the events before
  it were handed over and committed.
- After every successful (re)connect `on_connect` runs: the gap must be polled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import structlog

from jobtrail.core.model import utcnow
from jobtrail.core.retry import Backoff, retry_after_seconds
from jobtrail.listeners.sse_decoder import SSEDecoder, SSEEvent, SSEProtocolError
from jobtrail.providers.replies import HttpCall
from jobtrail.runtime.health import DEGRADED_AFTER, Component, State

log = structlog.get_logger(__name__)

MAX_RETRY_AFTER = 3600.0
MAX_IN_FLIGHT = 2


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Why a connection ended, and what that asks of the next attempt."""

    reason: str
    connected: bool = False
    state: State = State.BACKING_OFF
    server_delay: float | None = None
    pause: float | None = None
    stop: bool = False


def refusal(status: int, content_type: str, retry_after: float | None, auth_pause: float) -> StreamEnd | None:
    """None when the answer is a stream to consume; else why not. Pure."""
    if status == 200 and content_type == "text/event-stream":
        return None
    if status == 204:
        return StreamEnd(
            "the server answered 204 No Content: stop reconnecting", state=State.STOPPED, stop=True
        )
    if status in (401, 403):
        return StreamEnd(f"HTTP {status}: the key was refused", state=State.FAILED, pause=auth_pause)
    if status == 200:
        return StreamEnd(f"wrong content type {content_type[:100]!r}, not text/event-stream")
    return StreamEnd(f"HTTP {status}", server_delay=retry_after)


class SSEListener:
    def __init__(
        self,
        call: HttpCall,
        handle: Callable[[Sequence[SSEEvent]], Awaitable[None]],
        component: Component,
        session: aiohttp.ClientSession,
        *,
        on_connect: Callable[[], None] | None = None,
        read_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        backoff: Backoff = Backoff(),  # noqa: B008 - a frozen value
        stable_after: float = 60.0,
        auth_pause: float = 600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.call, self.handle, self.component, self.session = call, handle, component, session
        self.on_connect = on_connect
        self.read_timeout, self.connect_timeout = read_timeout, connect_timeout
        self.backoff, self.stable_after, self.auth_pause = backoff, stable_after, auth_pause
        self._sleep, self._clock, self._rand = sleep, clock, rand
        self.last_event_id = ""
        self.server_retry: float | None = None

    async def run(self) -> None:
        failures = unconnected = 0  # unconnected: attempts in a row that never got a stream
        while True:
            started = self._clock()
            end = await self._stream()
            if end.stop:
                self.component.set(end.state, end.reason)
                log.warning("sse_stopped", url=self.call.url, reason=end.reason)
                return
            if end.connected and self._clock() - started >= self.stable_after:
                failures = 0
            wait = self._wait(failures, end)
            failures += 1
            unconnected = 0 if end.connected else unconnected + 1
            state, reason = end.state, end.reason
            if state is State.BACKING_OFF and unconnected >= DEGRADED_AFTER:
                reason = f"the last {unconnected} connections in a row failed: {reason}"
                state = State.DEGRADED
            self.component.set(state, reason, utcnow() + timedelta(seconds=wait))
            level = log.info if end.connected else log.warning
            level("sse_reconnecting", url=self.call.url, reason=end.reason, seconds=round(wait, 3))
            await self._sleep(wait)

    def _wait(self, failures: int, end: StreamEnd) -> float:
        if end.pause is not None:
            return end.pause
        wait = self.backoff.delay(failures, self.server_retry, self._rand)
        if end.server_delay is not None:
            wait = max(wait, min(end.server_delay, MAX_RETRY_AFTER))
        return wait

    async def _stream(self) -> StreamEnd:
        headers = {**self.call.headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
        )
        connected = False
        try:
            async with self.session.get(self.call.url, headers=headers, timeout=timeout) as response:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), utcnow())
                end = refusal(response.status, response.content_type, retry_after, self.auth_pause)
                if end is not None:
                    return end
                connected = True
                self._connected()
                await self._consume(response)
            return StreamEnd("the server ended the stream", connected=True)
        except TimeoutError:
            return StreamEnd(f"no data for {self.read_timeout:g} s (read timeout)", connected=connected)
        except aiohttp.ClientError as exc:
            return StreamEnd(f"connection failed: {type(exc).__name__}: {exc}", connected=connected)
        except _HandlerFailed as exc:
            return StreamEnd(f"events could not be recorded: {exc}", connected=connected)
        except SSEProtocolError as exc:
            return StreamEnd(f"protocol error: {exc}; reconnecting", connected=connected)

    def _connected(self) -> None:
        self.component.set(State.CONNECTED)
        log.info("sse_connected", url=self.call.url, last_event_id=self.last_event_id or None)
        if self.on_connect is not None:
            self.on_connect()

    async def _consume(self, response: aiohttp.ClientResponse) -> None:
        """Decode and hand over each read's events. Up to `MAX_IN_FLIGHT` handovers run at
        once, so the next read is decoded while the previous one commits; they are
        awaited in order, and `last_event_id` advances only past committed events."""
        decoder = SSEDecoder(self.last_event_id)
        in_flight: deque[tuple[asyncio.Task[None], str, int]] = deque()
        try:
            async for chunk in response.content.iter_any():
                events = decoder.feed(chunk)
                if decoder.retry is not None:
                    self.server_retry = decoder.retry / 1000
                if events:
                    if len(in_flight) >= MAX_IN_FLIGHT:
                        await self._handed_over(in_flight.popleft())
                    task = asyncio.create_task(self._handle(events))
                    in_flight.append((task, decoder.last_event_id, len(events)))
                elif not in_flight:
                    self.last_event_id = decoder.last_event_id
            while in_flight:
                await self._handed_over(in_flight.popleft())
        finally:
            for task, _, _ in in_flight:
                task.cancel()
            await asyncio.gather(*(task for task, _, _ in in_flight), return_exceptions=True)

    async def _handle(self, events: Sequence[SSEEvent]) -> None:
        try:
            await self.handle(events)
        except Exception as exc:
            log.exception("sse_events_not_recorded", count=len(events))
            raise _HandlerFailed(str(exc) or type(exc).__name__) from exc

    async def _handed_over(self, entry: tuple[asyncio.Task[None], str, int]) -> None:
        task, last_event_id, count = entry
        await task
        self.last_event_id = last_event_id
        self.component.saw_event(count)


class _HandlerFailed(Exception):
    pass

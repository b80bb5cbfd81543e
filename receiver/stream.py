"""`GET /api/events`: every log entry as Server-Sent Events, `id:` its sequence number,
resumable after `Last-Event-ID` (or `?after=`).

A stream pulls what its client has not seen from the shared tail (receiver/tail.py), or
from the store while it is further behind than the tail's ring reaches (`CATCH_UP`
events at a time), and writes it at the pace the client reads, at most `WRITE_BYTES` a
write. Its socket's send buffer is held to `SEND_BUFFER` (the kernel would grow it to
4 MiB, all of it read from the store and encoded for a client that may never read it),
and its transport queues at most one write before the next waits.
What a stream holds for a client that has stopped reading is thus bounded: one page of
encoded events, the transport's buffer, the socket's. A client that has not taken a
write for `SLOW_SECONDS` is disconnected: logged as `stream_client_slow`, counted in
`/metrics`; it resumes with `Last-Event-ID` and loses nothing.
"""

from __future__ import annotations

import asyncio
import socket

import structlog
from aiohttp import web

from jobtrail.core.model import PROVIDERS
from jobtrail.receiver import params
from jobtrail.receiver.errors import ApiError
from jobtrail.receiver.keys import METRICS, STORE, TAIL
from jobtrail.receiver.tail import WRITE_BYTES, Wanted, encode, following
from jobtrail.store.base import Store

log = structlog.get_logger(__name__)

SLOW_SECONDS = 30.0
SEND_BUFFER = 128 * 1024  # the kernel doubles it: 256 KiB in flight, 2.5 MB/s at 100 ms RTT
CATCH_UP = 100
_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def event_stream(request: web.Request) -> web.StreamResponse:
    store, tail = request.app[STORE], request.app[TAIL]
    params.known(request.query, ("after", "provider", "job"))
    wanted = _wanted(request)
    raw = request.headers.get("Last-Event-ID", request.query.get("after"))
    last = params.whole(raw.strip() or "0" if raw is not None else None, "Last-Event-ID", 0)
    response = web.StreamResponse(headers=_HEADERS)
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    if transport is not None:  # a write waits once one write's worth is queued, not 64 KiB
        transport.set_write_buffer_limits(high=WRITE_BYTES)
    await response.prepare(request)
    if not await _send(request, response, b"retry: 2000\n\n", last):
        return response
    async with following(tail, request.transport):
        beats = tail.beats
        while not tail.closed and request.transport is not None:
            found = tail.after(last, wanted)
            if found is None:  # further behind than the ring reaches: from the store
                blocks, upto = await _page(store, last, wanted)
                if blocks and not await _send_all(request, response, blocks, last):
                    break
                if upto > last:  # sent, or (filtered) looked at and passed over
                    last = upto
                    continue
            elif found[0] or found[1] > last:
                if found[0] and not await _send(request, response, found[0], last):
                    break
                last = found[1]
                continue
            if tail.beats != beats:
                beats = tail.beats
                if not await _send(request, response, b": keep-alive\n\n", last):
                    break
                continue
            await tail.wait()
    return response


async def _page(store: Store, last: int, wanted: Wanted | None) -> tuple[list[bytes], int]:
    """The next CATCH_UP events after `last`, encoded (those `wanted`), and the last one's
    number: only the bytes are held while a slow client takes them, not the events
    (several times larger)."""
    events = await store.events_after(last, CATCH_UP)
    chosen = events if wanted is None else [e for e in events if wanted((e.provider, e.job_id))]
    return [encode(e) for e in chosen], (events[-1].seq if events else last)


def _wanted(request: web.Request) -> Wanted | None:
    """`?provider=` (and `&job=`, which needs it): only those events; None: every one."""
    provider = params.choice(request.query.get("provider"), "provider", PROVIDERS)
    job = params.name(request.query.get("job"), "job", 256)
    if job is not None and provider is None:
        raise ApiError(400, "bad_parameter", "job needs provider: a job id is its provider's")
    if provider is None:
        return None
    if job is None:
        return lambda key: key[0] == provider
    return lambda key: key == (provider, job)


async def _send_all(
    request: web.Request, response: web.StreamResponse, blocks: list[bytes], last: int
) -> bool:
    """Write encoded events in writes of about WRITE_BYTES."""
    start = size = 0
    for n, block in enumerate(blocks):
        size += len(block)
        if size >= WRITE_BYTES or n == len(blocks) - 1:
            if not await _send(request, response, b"".join(blocks[start : n + 1]), last):
                return False
            start, size = n + 1, 0
    return True


async def _send(request: web.Request, response: web.StreamResponse, data: bytes, last: int) -> bool:
    """Write `data`; False when the client is gone, or too slow and now disconnected."""
    try:
        async with asyncio.timeout(SLOW_SECONDS):
            await response.write(data)
    except TimeoutError:
        log.info("stream_client_slow", remote=request.remote, last_event_id=last, seconds=SLOW_SECONDS)
        request.app[METRICS].stream_dropped("slow")
        if request.transport is not None:
            request.transport.abort()
        return False
    except ConnectionError:
        return False
    return True

"""`GET /api/events` against hostile timing and hostile clients (issue 19, #5): an append
between a look and a wait, a client that never reads, a shutdown with 500 streams open."""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Event, Observation, utcnow
from jobtrail.core.settings import Settings
from jobtrail.receiver import stream
from jobtrail.receiver.keys import METRICS, TAIL
from tests.integration.rawhttp import Served, exchange, request, serving
from tests.integration.scrape import counted

EVENTS = b"GET /api/events HTTP/1.1\r\nHost: a\r\n%s\r\n"


@pytest.fixture
async def served(make_settings: Callable[..., Settings]) -> AsyncIterator[Served]:
    async with serving(make_settings()) as one:
        yield one


async def track(served: Served, job: str, error: str | None = None) -> None:
    kind = "failed" if error else "queued"
    await served.store.intake(
        Delivery("api", "venice", utcnow(), {}, b"{}", job), [Observation("venice", job, kind, error=error)]
    )


async def open_stream(port: int, headers: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(EVENTS % headers)
    await writer.drain()
    await reader.readuntil(b"retry: 2000\n\n")
    return reader, writer


async def next_id(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if line.startswith(b"id: "):
            return int(line[4:])


async def test_an_append_between_the_streams_look_and_its_wait_is_sent_at_once(served: Served) -> None:
    """Regression: the stream read the log, found nothing, and then waited for the next
    append; one committed in between waited for the 15 s heartbeat (14-16.6 s seen)."""
    served.app[TAIL].heartbeat = 3600.0  # only a wake-up can deliver the event
    real = served.store.events_after
    landed = False

    async def look_then_append(seq: int, limit: int = 1000) -> list[Event]:
        nonlocal landed
        found = await real(seq, limit)
        if not found and seq > 0 and not landed:
            landed = True
            await track(served, "late")  # committed after the look, before the wait
        return found

    served.store.events_after = look_then_append  # type: ignore[method-assign]
    await track(served, "first")
    reader, writer = await open_stream(served.port)
    try:
        assert 1 == await asyncio.wait_for(next_id(reader), 10)
        assert 2 == await asyncio.wait_for(next_id(reader), 10), "the late append was missed"
        assert landed
    finally:
        writer.close()


async def test_a_client_that_stops_reading_is_disconnected_and_counted(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "SLOW_SECONDS", 0.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", served.port))
    sock.sendall(EVENTS % b"")
    sock.setblocking(False)
    try:
        while served.app[TAIL].followers == 0:
            await asyncio.sleep(0.01)
        error = "e" * 4000
        for n in range(0, 3000, 100):  # about 12 MB of events, far past any socket buffer
            await served.store.intake_many([_failed(f"slow-{m}", error) for m in range(n, n + 100)])
            if counted(served.app[METRICS], "jobtrail_stream_disconnects").get("slow"):
                break
        async with asyncio.timeout(30):  # a guard, not a speed check
            while not counted(served.app[METRICS], "jobtrail_stream_disconnects").get("slow"):
                await asyncio.sleep(0.05)
        assert 200 == (await exchange(served.port, request("GET", "/healthz"))).status
        metrics = (await exchange(served.port, request("GET", "/metrics"))).body.decode()
        assert 'jobtrail_stream_disconnects_total{reason="slow"} 1' in metrics
        async with asyncio.timeout(10):
            while served.app[TAIL].followers:
                await asyncio.sleep(0.05)
    finally:
        sock.close()


def _failed(job: str, error: str) -> IntakeRequest:
    observation = Observation("venice", job, "failed", error=error)
    return IntakeRequest(Delivery("api", "venice", utcnow(), {}, b"{}", job), (observation,))


async def test_stopping_ends_500_open_streams_at_once(make_settings: Callable[..., Settings]) -> None:
    """Regression: with one stream open, SIGTERM did not stop the server in 40-100 s: the
    stream's handler waited for appends until aiohttp's shutdown timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = min(500, (max(soft, min(hard, 4096)) - 200) // 2)
    if soft < min(hard, 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    async with serving(make_settings()) as served:
        await track(served, "one")
        clients = [await open_stream(served.port) for _ in range(count)]
        assert count == served.app[TAIL].followers
        async with asyncio.timeout(30):  # a guard against the old 60 s wait, not a speed check
            await served.runner.cleanup()
            ends = await asyncio.gather(*(reader.read() for reader, _ in clients), return_exceptions=True)
        assert count == len(ends)
        for _, writer in clients:
            writer.close()


async def read_jobs(reader: asyncio.StreamReader, until_job: str) -> list[tuple[int, str]]:
    """(id, job) of every event read, up to and including `until_job`'s."""
    seen: list[tuple[int, str]] = []
    seq = 0
    while True:
        line = await reader.readline()
        if line.startswith(b"id: "):
            seq = int(line[4:])
        elif line.startswith(b"data: "):
            job = orjson.loads(line[6:])["job_id"]
            seen.append((seq, job))
            if job == until_job:
                return seen


@pytest.mark.parametrize("backlog", [0, 400])
async def test_a_stream_can_follow_one_provider_or_one_job(served: Served, backlog: int) -> None:
    """`?provider=` and `?provider=&job=`: only those events, from the ring and from the
    store alike (`backlog` events before the stream starts at 0: the catch-up path)."""
    for n in range(backlog):
        await track(served, f"old-{n}")
    await served.store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "px"), [Observation("pixazo", "px", "queued")]
    )
    job_reader, job_writer = await asyncio.open_connection("127.0.0.1", served.port)
    job_writer.write(b"GET /api/events?provider=venice&job=wanted&after=0 HTTP/1.1\r\nHost: a\r\n\r\n")
    provider_reader, provider_writer = await asyncio.open_connection("127.0.0.1", served.port)
    provider_writer.write(b"GET /api/events?provider=pixazo&after=0 HTTP/1.1\r\nHost: a\r\n\r\n")
    try:
        for n in range(50):
            await track(served, f"other-{n}")
        await track(served, "wanted")
        await served.store.intake(
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "py"), [Observation("pixazo", "py", "queued")]
        )
        jobs = await asyncio.wait_for(read_jobs(job_reader, "wanted"), 10)
        assert ["wanted"] == [job for _, job in jobs]
        pixazo = await asyncio.wait_for(read_jobs(provider_reader, "py"), 10)
        assert ["px", "py"] == [job for _, job in pixazo]
        assert pixazo[0][0] < pixazo[1][0], "ids are the log's sequence numbers"
    finally:
        job_writer.close()
        provider_writer.close()


@pytest.mark.parametrize(
    "query", [b"provider=runway", b"job=x", b"provider=venice&job=", b"provider=venice&provider=oxen"]
)
async def test_a_bad_stream_filter_is_a_400(served: Served, query: bytes) -> None:
    reply = await exchange(served.port, b"GET /api/events?%s HTTP/1.1\r\nHost: a\r\n\r\n" % query)
    assert 400 == reply.status and {"error", "message"} == set(reply.json())

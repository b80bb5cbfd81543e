"""Log levels mean what they say: a client going away is not an error, a failure is not
news; and each line about a job names its provider and id."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from jobtrail.core import logs
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import Settings
from jobtrail.receiver.keys import HEALTH, TAIL
from tests.conftest import API_TOKEN
from tests.integration.rawhttp import serving

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def lines() -> Iterator[Lines]:
    stream = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=stream, cache=False)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]

    yield read
    logs.configure(level="info", fmt="console", cache=False)
    structlog.reset_defaults()


def levels(found: list[dict[str, Any]], event: str) -> set[str]:
    return {line["level"] for line in found if line["event"] == event}


async def until(check: Callable[[], Any], seconds: float = 20) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.02)


async def test_an_event_stream_client_going_away_is_not_an_error(
    make_settings: Callable[..., Settings], lines: Lines
) -> None:
    async with serving(make_settings(JOBTRAIL_API_TOKEN=API_TOKEN)) as served:
        for round_ in range(3):
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.sendall(
                b"GET /api/events HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {API_TOKEN}\r\n\r\n".encode()
            )
            await until(lambda: served.app[TAIL].followers > 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # a reset, as a browser tab closing does
            await served.store.intake_many(
                [
                    IntakeRequest(
                        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"gone-{round_}-{n}"),
                        (Observation("pixazo", f"gone-{round_}-{n}", "processing"),),
                    )
                    for n in range(3)
                ]
            )
            await until(lambda: served.app[TAIL].followers == 0)
    found = lines()
    assert not [line for line in found if line["level"] in ("error", "critical")], found
    assert not [line for line in found if "exception" in line], "no traceback for a client leaving"


async def test_failures_are_warnings_with_their_reason_and_name_the_job(
    make_settings: Callable[..., Settings], lines: Lines, unused_tcp_port: int
) -> None:
    """A poll that fails, a download that fails: warnings, each with the reason and the job."""
    dead = unused_tcp_port  # nothing listens here: every request is refused
    cdn = web.Application()

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=503, text="try later")

    cdn.router.add_get("/{name}", gone)
    runner = web.AppRunner(cdn)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cdn_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = make_settings(
        VENICE_API_KEY="venice-key-0123456789",
        VENICE_BASE_URL=f"http://127.0.0.1:{dead}",
        JOBTRAIL_POLL_MIN_INTERVAL="0.05",
        JOBTRAIL_POLL_MAX_INTERVAL="0.2",
        JOBTRAIL_DOWNLOAD_ALLOW_HOSTS="127.0.0.1",
        JOBTRAIL_RETRY_SCHEDULE="1s,1s",
    )
    try:
        async with serving(settings, background=True) as served:
            await served.store.intake(
                Delivery("api", "venice", utcnow(), {}, b"{}", "v-1"),
                [Observation("venice", "v-1", "tracked", params={"model": "topaz-video-upscale"})],
            )
            url = f"http://127.0.0.1:{cdn_port}/p1.mp4"
            await served.store.intake(
                Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "p1"),
                [Observation("pixazo", "p1", "succeeded", result_urls=(url,))],
            )
            board = served.app[HEALTH]

            def seen() -> bool:
                found = lines()
                polled = levels(found, "poll_failed")
                fetched = [x for x in found if x["event"] == "dispatch_attempt" and x.get("job_id") == "p1"]
                degraded = board.snapshot()["venice.poller"]["state"] == "degraded"
                dead = any(x["outcome"] == "download.dead" for x in fetched)
                return bool(polled) and dead and degraded

            await until(seen)
            reason = board.snapshot()["venice.poller"]["reason"]
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{served.port}/readyz") as ready,
            ):
                said = await ready.json()
            assert (200, "degraded") == (ready.status, said["status"]), "webhooks are still taken"
            assert said["listeners"]["venice.poller"]["healthy"] is False
    finally:
        await runner.cleanup()
    found = lines()
    assert {"warning"} == levels(found, "poll_failed")
    polled = next(x for x in found if x["event"] == "poll_failed")
    assert ("venice", "v-1") == (polled["provider"], polled["job_id"]) and polled["reason"]
    assert "polls in a row failed" in reason
    attempts = [x for x in found if x["event"] == "dispatch_attempt" and x.get("job_id") == "p1"]
    assert {"download.failed"} <= {x["outcome"] for x in attempts}
    failed = next(x for x in attempts if x["outcome"] == "download.failed")
    assert ("warning", "pixazo") == (failed["level"], failed["provider"]) and "503" in failed["error"]
    assert {"error"} == {x["level"] for x in attempts if x["outcome"] == "download.dead"}
    assert not [x for x in found if "exception" in x], "failures of others are not tracebacks"

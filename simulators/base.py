"""What every simulator shares: job timelines, fault knobs, result files, pushes.

A simulated job runs a fixed timeline from its submission: queued, then processing, then
its outcome after `seconds` (default 2). The outcome comes from the input URL, so a
caller can ask for it: a URL containing `fail` fails, `error` is a system error (Pixazo
ERROR), `cancel` is cancelled; anything else succeeds; `?seconds=N` sets the duration.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web

RESULT_KEY = b"simulator-result-signing-key"


@dataclass
class Faults:
    """Knobs for misbehaving on purpose. Probabilities are per push; bursts count requests."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: bool = False
    error_burst: int = 0
    throttle_burst: int = 0
    disconnect_after: float = 0.0
    cut_downloads: int = 0
    slow_download: float = 0.0
    seed: int = 7
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def status_fault(self) -> web.Response | None:
        """A 503 or 429 while a burst lasts (for status and submit requests)."""
        if self.error_burst > 0:
            self.error_burst -= 1
            return web.json_response({"error": "Service temporarily unavailable"}, status=503)
        if self.throttle_burst > 0:
            self.throttle_burst -= 1
            return web.json_response(
                {"error": "Rate limit exceeded"}, status=429, headers={"Retry-After": "1"}
            )
        return None


@dataclass
class SimJob:
    id: str
    video: str
    started: float
    seconds: float
    outcome: str
    params: dict[str, Any] = field(default_factory=dict)
    cancelled_at: float | None = None
    deleted: bool = False

    @classmethod
    def create(cls, job_id: str, video: str, params: dict[str, Any] | None = None) -> SimJob:
        query = parse_qs(urlsplit(video).query)
        seconds = float(query.get("seconds", ["2"])[0])
        lowered = video.lower()
        outcome = next((o for o in ("cancel", "error", "fail") if o in lowered), "succeeded")
        outcome = {"cancel": "cancelled", "fail": "failed"}.get(outcome, outcome)
        return cls(job_id, video, time.monotonic(), seconds, outcome, params or {})

    def state(self, now: float | None = None) -> tuple[str, int]:
        """(queued | processing | succeeded | failed | error | cancelled, progress 0-100)."""
        now = time.monotonic() if now is None else now
        if self.cancelled_at is not None:
            return "cancelled", 0
        elapsed = now - self.started
        if elapsed < self.seconds * 0.2:
            return "queued", 0
        if elapsed < self.seconds:
            return "processing", min(99, int(100 * elapsed / self.seconds))
        if self.outcome == "cancelled":
            return "cancelled", 0
        return self.outcome, 100

    @property
    def done_at(self) -> float:
        return self.started + self.seconds


def result_url(base: str, job_id: str, ttl: float = 3600.0) -> str:
    expires = int(time.time() + ttl)
    sig = hmac.new(RESULT_KEY, f"{job_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:20]
    return f"{base}/results/{job_id}.mp4?expires={expires}&sig={sig}"


def result_routes(app: web.Application, size: int, faults: Faults) -> None:
    """`GET /results/{job}.mp4?expires&sig`: the result file; 403 once expired or forged,
    Range supported, cut or slowed on request."""

    async def serve(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job"]
        expires = request.query.get("expires", "0")
        sig = hmac.new(RESULT_KEY, f"{job_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:20]
        if not hmac.compare_digest(sig, request.query.get("sig", "")) or int(expires or 0) < time.time():
            return web.Response(status=403, text="Request has expired")
        data = video_bytes(job_id, size)
        start = 0
        header = request.headers.get("Range", "")
        if header.startswith("bytes=") and header.endswith("-") and header[6:-1].isdigit():
            start = min(int(header[6:-1]), len(data))
        response = web.StreamResponse(status=206 if start else 200)
        response.content_type = "video/mp4"
        response.content_length = len(data) - start
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        body = data[start:]
        if faults.cut_downloads > 0:
            faults.cut_downloads -= 1
            await response.write(body[: len(body) // 2])
            await asyncio.sleep(0.2)
            assert request.transport is not None
            request.transport.close()
            return response
        for offset in range(0, len(body), 65536):
            await response.write(body[offset : offset + 65536])
            if faults.slow_download:
                await asyncio.sleep(faults.slow_download)
        await response.write_eof()
        return response

    app.router.add_get("/results/{job}.mp4", serve)


def video_bytes(job_id: str, size: int) -> bytes:
    seed = hashlib.sha256(job_id.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def push(
    session: Any, faults: Faults, send: Callable[[], Awaitable[None]], *, extra_delay: float = 0.0
) -> None:
    """Deliver one push with the fault knobs applied: dropped, delayed, duplicated."""
    if faults.rng.random() < faults.drop:
        return
    wait = extra_delay + (faults.rng.random() * faults.delay if faults.delay else 0.0)
    if wait:
        await asyncio.sleep(wait)
    copies = 2 if faults.rng.random() < faults.duplicate else 1
    for _ in range(copies):
        try:
            await send()
        except Exception:  # a receiver that is down loses the push, like the real thing
            return


class Pusher:
    """What a simulator that pushes needs: one HTTP session and its background push tasks,
    both ended with the app (`app.cleanup_ctx.append(self.pushing)`)."""

    session: aiohttp.ClientSession

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def pushing(self, app: web.Application) -> AsyncIterator[None]:
        self.session = aiohttp.ClientSession()
        yield
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()

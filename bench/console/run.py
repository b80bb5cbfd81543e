"""bench/console: server-side render time of the console's pages on a big database,
against the JSON API routes that read the same rows, in the same run.

    python -m bench.console.run [--jobs 100000] [--events 1000] [--requests 200]

Builds a SQLite database of JOBS jobs through the store's own write path (`intake_many`,
two reports each: a `queued` and a `processing`, as pollers and webhooks write them),
then one job with EVENTS events (a hundred reports, and dispatch records loaded after
them: a notification retried for days). Serves the console in this process and times,
inside the server (a middleware around the handler: store reads, folding, rendering),
REQUESTS requests to each page and to its API counterpart:

    the jobs page (first page, 50 jobs)          vs  GET /api/jobs
    the jobs page filtered (provider, status)    vs  GET /api/jobs?provider=&status=
    the job page with EVENTS events              vs  GET /api/jobs/{p}/{id}/events
    the overview (counts every job)              (no API counterpart)

Prints p50/p99 in ms and the ratio of the page to the API. The targets: a median of at
most 20 ms for the jobs page and the job page on a 100,000-job database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from jobtrail.core import logs
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import load
from jobtrail.receiver.app import create_app
from jobtrail.receiver.serve import store_for
from jobtrail.store.base import Store

PROVIDERS = ("pixazo", "apiframe", "oxen", "venice")
HEAVY = "heavy-job"


async def build(store: Store, jobs: int, events: int) -> None:
    started = time.perf_counter()
    at = utcnow()
    batch: list[IntakeRequest] = []
    for n in range(jobs):
        provider = PROVIDERS[n % len(PROVIDERS)]
        job_id = f"job-{n:07d}"
        observations = (Observation(provider, job_id, "queued"), Observation(provider, job_id, "processing"))
        batch.append(
            IntakeRequest(
                Delivery("poll", provider, at, {}, b'{"status":"processing"}', job_id), observations
            )
        )
        if len(batch) == 1000:
            await store.intake_many(batch)
            batch = []
    if batch:
        await store.intake_many(batch)
    reports = min(events, 100)
    for progress in range(reports):
        body = b'{"status":"processing","progress":%d}' % progress
        await store.intake(
            Delivery("webhook", "oxen", utcnow(), {"Content-Type": "application/json"}, body, HEAVY),
            [Observation("oxen", HEAVY, "processing", progress=progress)],
        )
    first = await store.last_seq() + 1
    rows = [
        (
            first + n,
            "oxen",
            HEAVY,
            "notification.failed",
            "dispatch",
            utcnow(),
            {
                "key": f"notify:oxen:{HEAVY}:webhook",
                "attempt": n + 1,
                "http_status": 503,
                "duration_ms": 12.5,
                "error": "HTTP 503: upstream unavailable",
                "sink": "webhook",
                "kind": "notify",
            },
            None,
            None,
        )
        for n in range(events - reports)
    ]
    for start in range(0, len(rows), 1000):
        await store.load("events", rows[start : start + 1000])
    print(f"built {jobs:,} jobs and one of {events:,} events in {time.perf_counter() - started:.1f} s")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def main(args: argparse.Namespace) -> None:
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        settings = load(None, {"JOBTRAIL_DATA_DIR": tmp, "JOBTRAIL_WEBHOOK_TOKEN": "bench-token-0123456789"})
        store = store_for(settings)
        await store.open()
        try:
            await build(store, args.jobs, args.events)
            timings: dict[str, list[float]] = {}

            @web.middleware
            async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
                began = time.perf_counter()
                response = await handler(request)
                timings.setdefault(request.path_qs, []).append((time.perf_counter() - began) * 1000)
                return response

            app = create_app(settings, store)
            app.middlewares.insert(0, timed)
            async with TestClient(TestServer(app)) as client:
                await run(client, args.requests, timings)
        finally:
            await store.close()


async def run(client: TestClient[Any, Any], requests: int, timings: dict[str, list[float]]) -> None:
    pairs = [
        ("jobs page", "/ui/jobs", "/api/jobs"),
        (
            "jobs page, filtered",
            "/ui/jobs?provider=venice&status=processing",
            "/api/jobs?provider=venice&status=processing",
        ),
        ("job page", f"/ui/jobs/oxen/{HEAVY}", f"/api/jobs/oxen/{HEAVY}/events?limit=10000"),
        ("overview", "/ui/", None),
    ]
    for _, page, api in pairs:
        for path in (page, api):
            if path is None:
                continue
            for _ in range(max(requests // 10, 5)):  # warm the caches
                assert 200 == (await client.get(path)).status, path
            timings.pop(path, None)
            for _ in range(requests):
                answer = await client.get(path)
                assert 200 == answer.status, path
                await answer.read()
    print(
        f"\n{'':22} {'page p50':>9} {'p99':>7} {'API p50':>8} {'p99':>7} {'page/API':>9}  (ms, inside the server)"
    )
    for name, page, api in pairs:
        p50, p99 = _quantiles(timings[page])
        if api is None:
            print(f"{name:22} {p50:9.2f} {p99:7.2f}")
            continue
        a50, a99 = _quantiles(timings[api])
        print(f"{name:22} {p50:9.2f} {p99:7.2f} {a50:8.2f} {a99:7.2f} {p50 / a50:8.2f}x")
    for name, page, _ in pairs[:3]:
        p50, _ = _quantiles(timings[page])
        verdict = "meets" if p50 <= 20 else "MISSES"
        print(f"target: {name} median {p50:.2f} ms {verdict} the 20 ms goal")


def _quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()

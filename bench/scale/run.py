"""bench/scale: reads on a big SQLite log, with four clients, and what retention saves.

    python -m bench.scale.run [--jobs 100000] [--requests 2000] [--clients 4] [--skip-removal]

Builds a database of JOBS jobs through the store's own write path (`intake_many`): each
job tracked, queued, processing at 10..70%, then succeeded (one in ten failed, one in
a hundred also failed later: a conflict), ~10 events each, a delivery per report, a
rejected delivery per hundred jobs, a download and a Slack notification per finished
job; every hundredth notification is then marked dead (directly in the file: a bench
set-up, not the worker's path). Deliveries are stamped 40 days old, so retention has
work. Then serves the API in this process and measures, with CLIENTS concurrent
clients, p50/p99 of each route (inside the round trip, over REQUESTS requests each),
against `/healthz` measured the same way (the HTTP floor: the ratio is the route's own
cost), and a job lookup while the other clients run filtered lists. Then bytes per job
before and after a retention walk (the default 30-day windows, run as if 40 days later:
every delivery and every delivered notification goes), the reads the size moves measured
again on what is left, and last every job built removed by job retention while four
writers take new jobs (the walk's rate; intake's p50/p99 beside it against intake
alone, in the same run).

The issue's targets at 1,000,000 jobs with four clients: lookup p99 <= 2 ms, any list
page or filter p99 <= 10 ms, a lookup beside filtered lists p99 <= 5 ms, <= 2 KB a job
after retention. Start-up, the poller at 100,000 open jobs and `/healthz` under it are
measured by `python -m bench.scale.poller`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bench.scale.db import PostgresDatabase, SQLiteFile
from jobtrail.core import logs
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import RetentionSettings, load
from jobtrail.receiver.app import create_app
from jobtrail.receiver.serve import store_for
from jobtrail.runtime.health import Component
from jobtrail.runtime.retention import JOB_PAGE, Pruner
from jobtrail.store.base import Store

Database = SQLiteFile | PostgresDatabase

PROVIDERS = ("pixazo", "apiframe", "oxen", "venice")
HEADERS = {"Content-Type": "application/json", "User-Agent": "provider/1.0", "X-Request-Id": "r" * 32}


def _job(n: int) -> tuple[str, str]:
    return PROVIDERS[n % 4], f"job-{n:08d}"


def _requests(n: int, at: Any) -> list[IntakeRequest]:
    provider, job_id = _job(n)
    reports: list[Observation] = [Observation(provider, job_id, "tracked", params={"model": "upscale-4k"})]
    reports.append(Observation(provider, job_id, "queued"))
    reports += [Observation(provider, job_id, "processing", progress=p) for p in range(10, 80, 10)]
    if n % 10 == 9:
        reports.append(Observation(provider, job_id, "failed", error="out of GPU memory"))
    else:
        reports.append(
            Observation(provider, job_id, "succeeded", result_urls=(f"https://cdn.example/{job_id}.mp4",))
        )
    if n % 100 == 42:
        reports.append(Observation(provider, job_id, "failed", error="a late, disagreeing failure"))
    body = b'{"id": "%s", "status": "processing", "progress": 50, "model": "upscale-4k"}' % job_id.encode()
    return [IntakeRequest(Delivery("webhook", provider, at, HEADERS, body, job_id), (o,)) for o in reports]


async def build(store: Store, jobs: int, db: Database) -> None:
    started = time.perf_counter()
    old = utcnow() - timedelta(days=40)
    batch: list[IntakeRequest] = []
    for n in range(jobs):
        batch += _requests(n, old)
        if n % 100 == 0:
            batch.append(
                IntakeRequest(
                    Delivery("webhook", "pixazo", old, HEADERS, b"not json", None), (), "malformed JSON"
                )
            )
        if len(batch) >= 2000:
            await store.intake_many(batch)
            batch = []
    if batch:
        await store.intake_many(batch)
    await db.execute("UPDATE outbox SET status = 'dead', attempts = 8 WHERE kind = 'notify' AND id % 100 = 0")
    print(f"built {jobs:,} jobs, {await store.last_seq():,} events in {time.perf_counter() - started:.0f} s")


Timed = Callable[[TestClient[Any, Any]], Awaitable[None]]


def routes(jobs: int, since: str) -> dict[str, Callable[[], str]]:
    def any_job() -> str:
        provider, job_id = _job(random.randrange(jobs))
        return f"/api/jobs/{provider}/{job_id}"

    return {
        "healthz (the floor)": lambda: "/healthz",
        "job lookup": any_job,
        "job events": lambda: any_job() + "/events",
        "jobs, first page": lambda: "/api/jobs",
        "jobs?provider": lambda: f"/api/jobs?provider={random.choice(PROVIDERS)}",
        "jobs?status=failed": lambda: "/api/jobs?status=failed",
        "jobs?conflict=true": lambda: "/api/jobs?conflict=true",
        "jobs?since (last hour)": lambda: f"/api/jobs?since={since}",
        "outbox?status=dead": lambda: "/api/outbox?status=dead",
        "outbox?sink=slack": lambda: "/api/outbox?sink=slack",
        "deliveries?verdict=rejected": lambda: "/api/deliveries?verdict=rejected",
        "deliveries?provider": lambda: f"/api/deliveries?provider={random.choice(PROVIDERS)}",
    }


async def measure(
    client: TestClient[Any, Any], path: Callable[[], str], requests: int, clients: int
) -> list[float]:
    times: list[float] = []

    async def one_client() -> None:
        for _ in range(requests // clients):
            began = time.perf_counter()
            answer = await client.get(path())
            await answer.read()
            times.append((time.perf_counter() - began) * 1000)
            assert answer.status == 200, (path(), answer.status)

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return times


def _q(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def main(args: argparse.Namespace) -> None:
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        env = {
            "JOBTRAIL_DATA_DIR": tmp,
            "JOBTRAIL_WEBHOOK_TOKEN": "bench-token-0123456789",
            "JOBTRAIL_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
        }
        db: Database = PostgresDatabase() if args.store == "postgres" else SQLiteFile(tmp)
        if isinstance(db, PostgresDatabase):
            await db.create()
        settings = load(None, {**env, **db.env})
        store = store_for(settings)
        try:
            await store.open()
            print(f"store: {db.kind}")
            await build(store, args.jobs, db)
            since = (utcnow() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
            async with TestClient(TestServer(create_app(settings, store))) as client:
                await _reads(client, args, routes(args.jobs, since), "the whole log")
                await _retention(store, db, args.jobs)
                after = {name: path for name, path in routes(args.jobs, since).items() if name in AFTER}
                await _reads(client, args, after, "after retention")
            if not args.skip_removal:
                await _job_removal(store, db, args.jobs, args.job_page)
        finally:
            await store.close()
            await db.close()


# Routes measured again after retention: the log a long-running server holds.
AFTER = ("healthz (the floor)", "job lookup", "job events", "jobs?provider", "outbox?status=dead")


async def _reads(
    client: TestClient[Any, Any], args: argparse.Namespace, paths: dict[str, Any], what: str
) -> None:
    table = []
    for name, path_of in paths.items():
        await measure(client, path_of, 40, args.clients)  # warm
        table.append((name, _q(await measure(client, path_of, args.requests, args.clients))))
    beside = await _lookup_beside_lists(client, args)
    floor = table[0][1][0]
    print(f"\n{what}: {args.clients} clients, {args.requests} requests a route; ms per request (round trip)")
    print(f"{'':30} {'p50':>7} {'p99':>7} {'p50 / healthz':>14}")
    for name, (p50, p99) in table:
        print(f"{name:30} {p50:7.2f} {p99:7.2f} {p50 / floor:13.1f}x")
    print(f"{'lookup beside filtered lists':30} {beside[0]:7.2f} {beside[1]:7.2f} {beside[0] / floor:13.1f}x")


async def _lookup_beside_lists(client: TestClient[Any, Any], args: argparse.Namespace) -> tuple[float, float]:
    """One client looks jobs up while the others loop on filtered listings."""
    stop = asyncio.Event()

    async def lister() -> None:
        paths = ["/api/jobs?provider=venice", "/api/outbox?status=dead", "/api/deliveries?verdict=rejected"]
        while not stop.is_set():
            await (await client.get(random.choice(paths))).read()

    listers = [asyncio.create_task(lister()) for _ in range(args.clients - 1)]
    try:
        lookups = routes(args.jobs, "")["job lookup"]
        return _q(await measure(client, lookups, args.requests, 1))
    finally:
        stop.set()
        await asyncio.gather(*listers)


async def _retention(store: Store, db: Database, jobs: int) -> None:
    """Bytes a job before and after a retention walk at the default windows (30 days) run
    as if 40 days later, when every delivery and every notification built is past its
    window, and the outbox work of the jobs built is done (the build runs no worker; the
    hundredth notifications marked dead stay)."""
    await db.execute("UPDATE outbox SET status = 'done' WHERE status = 'pending'")
    before = await db.size()
    started = time.perf_counter()
    component = Component("retention", "pruner")
    later = utcnow() + timedelta(days=40)
    deleted = await Pruner(RetentionSettings(), store, component, pause=0, clock=lambda: later).once()
    took = time.perf_counter() - started
    after = await db.size()
    print(
        f"\nretention (30 days): {deleted:,} deliveries and {component.counts.get('notifications_deleted', 0):,} "
        f"notifications deleted in {took:.1f} s; "
        f"{before / jobs:,.0f} -> {after / jobs:,.0f} bytes a job ({before / 2**20:,.0f} -> {after / 2**20:,.0f} MiB)"
    )


async def _job_removal(store: Store, db: Database, jobs: int, job_page: int) -> None:
    """Every finished job built removed (the cut: now, so the whole log built is old),
    while four writers take webhooks for new jobs: the walk's rate, and intake's latency
    beside it against intake's alone, in the same run."""
    await db.execute("UPDATE outbox SET status = 'done' WHERE status = 'pending'")  # all work done
    cut = utcnow()
    alone = await _intake_while(store, asyncio.sleep(3), "alone")
    settings = RetentionSettings(deliveries_days=0, rejected_days=0, jobs_days=1)
    component = Component("retention", "pruner")
    pruner = Pruner(settings, store, component, job_page=job_page, clock=lambda: cut + timedelta(days=1))
    started = time.perf_counter()
    beside = await _intake_while(store, pruner.once(), "beside")
    took = time.perf_counter() - started
    removed = component.counts.get("jobs_removed", 0)
    left = await db.count("jobs")
    print(
        f"\njob removal: {removed:,} of {jobs:,} jobs in {took:.1f} s ({removed / took:,.0f} jobs/s); "
        f"{left:,} jobs left (the new ones), {await db.size() / 2**20:,.0f} MiB"
    )
    for name, times in (("alone", alone), ("beside the walk", beside)):
        p50, p99 = _q(times)
        print(
            f"intake {name:20} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {max(times):7.2f} ms  ({len(times):,})"
        )


async def _intake_while(store: Store, work: Awaitable[Any], tag: str) -> list[float]:
    """Four writers send a new job's first report each, one after another, until `work` ends."""
    task = asyncio.ensure_future(work)
    times: list[float] = []

    async def writer(w: int) -> None:
        n = 0
        while not task.done():
            n += 1
            job_id = f"{tag}-{w}-{n}"
            began = time.perf_counter()
            await store.intake(
                Delivery("webhook", "pixazo", utcnow(), HEADERS, b'{"status": "PROCESSING"}', job_id),
                [Observation("pixazo", job_id, "processing", progress=5)],
            )
            times.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(task, *(writer(w) for w in range(4)))
    return times


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--job-page", type=int, default=JOB_PAGE, help="jobs a removal page")
    parser.add_argument(
        "--skip-removal", action="store_true", help="leave out the job removal walk (12 min at 1M jobs)"
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: a database of its own on JOBTRAIL_BENCH_POSTGRES_URL (else the tests' server)",
    )
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()

"""bench/scale: reads on a big SQLite log, with four clients, and what retention saves.

    python -m bench.scale.run [--jobs 100000] [--requests 2000] [--clients 4] [--rounds 3] [--skip-removal]
                              [--data-dir DIR [--build-only]]

Builds a database of JOBS jobs through the store's own write path (`intake_many`): each
job tracked, queued, processing at 10..70%, then succeeded (one in ten failed, one in
a hundred also failed later: a conflict), ~10 events each, a delivery per report, a
rejected delivery per hundred jobs, a download and a Slack notification per finished
job; every hundredth notification is then marked dead (directly in the file: a bench
set-up, not the worker's path). Deliveries are stamped 40 days old, so retention has
work. Then serves the API from this process on a loopback socket, as `jobtrail serve`
serves it, and measures on the file read once through the page cache, with CLIENTS
concurrent clients in a process of their own (`clients.py`, as a real API client is),
p50/p99 of each route (the round trip, over REQUESTS requests each; the median of ROUNDS
rounds, and the worst p99),
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
import contextlib
import json
import sys
import tempfile
import time
from asyncio.subprocess import PIPE
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import unused_port

from bench.scale.clients import quantiles
from bench.scale.db import PostgresDatabase, SQLiteFile
from bench.scale.routes import job
from jobtrail.core import logs
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import RetentionSettings, load
from jobtrail.receiver.app import create_app
from jobtrail.receiver.serve import listening, store_for
from jobtrail.runtime.health import Component
from jobtrail.runtime.retention import JOB_PAGE, Pruner
from jobtrail.store.base import Store

Database = SQLiteFile | PostgresDatabase

HEADERS = {"Content-Type": "application/json", "User-Agent": "provider/1.0", "X-Request-Id": "r" * 32}


def _requests(n: int, at: Any) -> list[IntakeRequest]:
    provider, job_id = job(n)
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


async def main(args: argparse.Namespace) -> None:
    logs.configure(level="warning")
    with contextlib.ExitStack() as stack:
        tmp = args.data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-"))
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
            if isinstance(db, SQLiteFile) and await db.count("jobs"):
                args.jobs = await db.count("jobs")  # the routes ask for the jobs it holds
                print(f"reusing the log in {tmp}: {args.jobs:,} jobs")
            else:
                await build(store, args.jobs, db)
            if args.build_only:
                return
            began = time.perf_counter()
            await db.settle()
            print(f"the build's writes on the disk in {time.perf_counter() - began:.1f} s")
            since = (utcnow() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
            port = unused_port()
            async with listening(create_app(settings, store), settings, port):  # as `jobtrail serve`
                url = f"http://{settings.host}:{port}"
                await _reads(url, since, args, db, None, "the whole log")
                await _retention(store, db, args.jobs)
                await _reads(url, since, args, db, AFTER, "after retention")
            if not args.skip_removal:
                await _job_removal(store, db, args.jobs, args.job_page)
        finally:
            await store.close()
            await db.close()


# Routes measured again after retention: the log a long-running server holds.
AFTER = ("healthz (the floor)", "job lookup", "job events", "jobs?provider", "outbox?status=dead")


async def _reads(
    url: str, since: str, args: argparse.Namespace, db: Database, names: tuple[str, ...] | None, what: str
) -> None:
    """Each route's p50/p99 as measured by the client process (`clients.py`), while this
    process's event loop only serves, on a log read once through the page cache."""
    print(f"\n{what}: {await db.warm()}")
    job = {
        "url": url,
        "jobs": args.jobs,
        "since": since,
        "requests": args.requests,
        "clients": args.clients,
        "rounds": args.rounds,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scale.clients", stdin=PIPE, stdout=PIPE
    )
    out, _ = await child.communicate(json.dumps({**job, "routes": names}).encode())
    if child.returncode != 0:
        raise SystemExit(f"the client process failed ({child.returncode})")
    result = json.loads(out)
    table, beside = result["table"], result["beside"]
    floor = table[0][1]
    print(
        f"\n{what}: {args.clients} clients in another process, {args.requests} requests a route, "
        f"{args.rounds} rounds; ms per request, the median of the rounds' p50 and p99, and the worst p99"
    )
    print(f"{'':30} {'p50':>7} {'p99':>7} {'worst':>7} {'p50 / healthz':>14}")
    for name, p50, p99, worst in [*table, ["lookup beside filtered lists", *beside]]:
        print(f"{name:30} {p50:7.2f} {p99:7.2f} {worst:7.2f} {p50 / floor:13.1f}x")


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
        p50, p99 = quantiles(times)
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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each route's requests")
    parser.add_argument("--job-page", type=int, default=JOB_PAGE, help="jobs a removal page")
    parser.add_argument(
        "--skip-removal", action="store_true", help="leave out the job removal walk (12 min at 1M jobs)"
    )
    parser.add_argument(
        "--data-dir",
        help="SQLite: build the log in this directory and keep it; a log already there is measured "
        "as it is (copy it first: retention changes it)",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build the log (in --data-dir, to keep it) and stop"
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

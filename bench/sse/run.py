"""bench/sse: Oxen stream events into the durable log, against httpx-sse parsing the same
stream without storing; then the time to settle 1,000 jobs that finished during a gap.

    python -m bench.sse.run [--events 100000] [--jobs 1000] [--concurrency 4]

The stream server runs in its own process (bench/sse/server.py). Part 1 reads the same
stream twice in one run: httpx-sse only parsing it (baseline), then jobtrail's listener
recording every event (delivery + event + job + download outbox row) in SQLite with
synchronous=FULL. Part 2 tracks JOBS open Oxen jobs, lets the poller see them running,
takes the stream down, finishes every job, brings the stream back, and times from the
reconnect to the last job settled; the baseline is the same number of bare status GETs
at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import aiohttp
import httpx
import httpx_sse

from bench.ingest.run import free_port, wait_up
from jobtrail.core import logs
from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import load
from jobtrail.listeners import run
from jobtrail.listeners.sse import SSEListener
from jobtrail.listeners.sse_decoder import SSEEvent
from jobtrail.providers import oxen
from jobtrail.providers.replies import HttpCall
from jobtrail.receiver.serve import tune_gc
from jobtrail.runtime.health import Health, State
from jobtrail.store.sqlite import SQLiteStore

KEY = "bench-oxen-key-0123456789"
TARGET = 20_000


async def parse_only(base: str, count: int) -> float:
    seen = 0
    started = time.perf_counter()
    async with (
        httpx.AsyncClient(timeout=None) as client,
        httpx_sse.aconnect_sse(client, "GET", f"{base}/api/events?again=1") as source,
    ):
        async for event in source.aiter_sse():
            if event.event == oxen.COMPLETED_EVENT:
                seen += 1
                if seen == count:
                    break
    return time.perf_counter() - started


async def durable(base: str, count: int, db: Path) -> tuple[float, int]:
    store = SQLiteStore(db, EffectPlanner())
    await store.open()
    tune_gc()  # as `jobtrail serve` does once it is up
    record = run.record_stream(store)
    seen = 0
    batches = 0
    done = asyncio.Event()

    async def handle(events: Sequence[SSEEvent]) -> None:
        nonlocal seen, batches
        await record(events)
        seen += len(events)
        batches += 1
        if seen >= count:
            done.set()

    async with aiohttp.ClientSession() as session:
        call = HttpCall("GET", f"{base}/api/events?again=1", {"Authorization": f"Bearer {KEY}"})
        listener = SSEListener(call, handle, Health().component("oxen.sse", "sse"), session)
        started = time.perf_counter()
        task = asyncio.create_task(listener.run())
        await done.wait()
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await store.close()
    return elapsed, batches


async def bare_polls(base: str, jobs: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> None:
            async with gate, session.get(f"{base}/api/ai/queue/gap-{n}") as response:
                await response.json()

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(jobs)))
        return time.perf_counter() - started


async def gap(base: str, jobs: int, concurrency: int, work: Path) -> float:
    env = {
        "OXEN_API_KEY": KEY,
        "OXEN_BASE_URL": base,
        "JOBTRAIL_DATA_DIR": str(work),
        "JOBTRAIL_STORE_URL": f"sqlite:///{work / 'gap.db'}",
        "JOBTRAIL_POLL_MIN_INTERVAL": "3600",
        "JOBTRAIL_POLL_MAX_INTERVAL": "3600",
        "JOBTRAIL_POLL_CONCURRENCY": str(concurrency),
    }
    settings = load(None, env)
    store = SQLiteStore(work / "gap.db", EffectPlanner())
    await store.open()
    at = utcnow()
    await store.intake_many(
        [
            IntakeRequest(Delivery("api", "oxen", at), (Observation("oxen", f"gap-{n}", "tracked"),))
            for n in range(jobs)
        ]
    )
    health = Health()
    async with aiohttp.ClientSession() as control:
        await control.post(f"{base}/control/stream?up=0")
        async with run.running(settings, store, health):
            while len([j for j in await store.open_jobs("oxen") if j.status.value == "processing"]) < jobs:
                await asyncio.sleep(0.05)
            await control.post(f"{base}/control/finish")  # every job finishes during the gap
            await control.post(f"{base}/control/stream?up=1")
            sse = health.component("oxen.sse", "sse")
            while sse.state is not State.CONNECTED:
                await asyncio.sleep(0.001)
            reconnected = sse.since
            while await store.open_jobs("oxen", limit=1):
                await asyncio.sleep(0.005)
            settled = utcnow()
    await store.close()
    return (settled - reconnected) / timedelta(seconds=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    logs.configure(level="warning")
    work = Path(tempfile.mkdtemp(prefix="jobtrail-bench-sse-"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.sse.server", str(port), str(args.events), str(args.jobs)],
        stderr=(work / "server.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(port, "/api/ai/queue/x")
        print(f"bench/sse: {args.events} events, {os.cpu_count()} cores, SQLite synchronous=FULL in {work}")
        asyncio.run(parse_only(base, min(args.events, 10_000)))  # warm up
        parsed = asyncio.run(parse_only(base, args.events))
        stored, batches = asyncio.run(durable(base, args.events, work / "sse.db"))
        base_rate, rate = args.events / parsed, args.events / stored
        print(f"  httpx-sse parsing only       {base_rate:>10,.0f} events/s")
        print(
            f"  jobtrail into the log        {rate:>10,.0f} events/s   ({batches} stream reads handed over)"
        )
        print(
            f"  ratio durable/parse          {rate / base_rate:10.2f}   (target: >= {TARGET:,} events/s durable)"
        )
        with sqlite3.connect(work / "sse.db") as conn:
            events, jobs, outbox = conn.execute(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM outbox)"
            ).fetchone()
        print(f"  log check: {events} events, {jobs} jobs, {outbox} downloads queued")
        settle = asyncio.run(gap(base, args.jobs, args.concurrency, work))
        bare = asyncio.run(bare_polls(base, args.jobs, args.concurrency))
        print(
            f"\ngap: {args.jobs} open Oxen jobs finished while the stream was down, poll concurrency {args.concurrency}"
        )
        print(f"  bare status GETs (no store)  {bare * 1000:8.0f} ms")
        print(f"  reconnect -> all settled     {settle * 1000:8.0f} ms   ratio {settle / bare:.2f}")
        ok = events == args.events and rate >= TARGET
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

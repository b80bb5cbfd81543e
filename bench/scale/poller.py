"""bench/scale/poller: `jobtrail serve` polling 100,000 open jobs against a local fake
provider: start-up, `/healthz` meanwhile, CPU, memory, stop.

    python -m bench.scale.poller [--jobs 100000] [--seconds 60] [--compare DIR]

Builds a SQLite file of JOBS open Pixazo jobs (tracked, then processing) through the
store's write path, copies it for each server, serves it with `jobtrail serve` (Pixazo's
key set, its base URL a fake provider in this process that answers every status request
with PROCESSING for that job), and for SECONDS: probes `/healthz` every 20 ms (p50, p99,
max), samples the server's RSS and CPU from /proc, and counts the polls the fake answers
and the delivery rows the file gained. Then SIGTERM, and how long the exit takes.
`--compare DIR` runs another checkout (its own `.venv`, say the code before a change)
the same way, one after the other, on a copy of the same file.

Targets (issue 20): start-up to ready <= 1 s, RSS <= 200 MB, `/healthz` p99 <= 50 ms,
stop <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiohttp import web

from bench.ingest.run import free_port, serve_app
from jobtrail.core import logs
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import load
from jobtrail.receiver.serve import store_for

TOKEN = "bench-token-0123456789abcdef"
KEY = "bench-pixazo-key-0123456789"


async def build(path: Path, jobs: int) -> None:
    settings = load(None, {"JOBTRAIL_DATA_DIR": str(path.parent), "JOBTRAIL_WEBHOOK_TOKEN": TOKEN})
    store = store_for(settings)
    await store.open()
    try:
        batch: list[IntakeRequest] = []
        for n in range(jobs):
            job_id = f"open-{n:07d}"
            at = utcnow()
            batch.append(
                IntakeRequest(
                    Delivery("api", "pixazo", at, {}, b"{}", job_id),
                    (Observation("pixazo", job_id, "tracked"),),
                )
            )
            batch.append(
                IntakeRequest(
                    Delivery("webhook", "pixazo", at, {}, b"{}", job_id),
                    (Observation("pixazo", job_id, "processing"),),
                )
            )
            if len(batch) >= 2000:
                await store.intake_many(batch)
                batch = []
        if batch:
            await store.intake_many(batch)
    finally:
        await store.close()


class Provider:
    def __init__(self) -> None:
        self.polls = 0

    async def status(self, request: web.Request) -> web.Response:
        self.polls += 1
        return web.json_response({"request_id": request.match_info["id"], "status": "PROCESSING"})


def _downgrade(path: Path, root: Path) -> None:
    """Take the copy back to the schema the checkout at `root` knows (an older one
    refuses a newer file): drop the indexes of the migrations it lacks (those that only
    add indexes) and forget them."""
    known = len(list((root / "store" / "sql" / "sqlite").glob("*.sql")))
    here = sorted((Path(__file__).resolve().parents[2] / "store" / "sql" / "sqlite").glob("*.sql"))
    with sqlite3.connect(path) as conn:
        for migration in here[known:]:
            for line in migration.read_text().splitlines():
                if line.startswith("CREATE INDEX "):
                    conn.execute(f"DROP INDEX IF EXISTS {line.split()[2]}")
                elif line.strip() and not line.startswith("--"):
                    raise SystemExit(f"{migration.name} does more than add indexes: no --compare with {root}")
        conn.execute("DELETE FROM schema_migrations WHERE version > ?", (known,))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM deliveries").fetchone()[0])


async def run_one(
    label: str, root: Path, source: Path, seconds: float, base_url: str, provider: Provider
) -> None:
    data = Path(tempfile.mkdtemp(prefix=f"bench-poller-{label}-"))
    shutil.copy(source, data / "jobtrail.db")
    _downgrade(data / "jobtrail.db", root)
    rows_before = _rows(data / "jobtrail.db")
    port = free_port()
    env = {
        **os.environ,
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(data),
        "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
        "PIXAZO_API_KEY": KEY,
        "PIXAZO_BASE_URL": base_url,
        "JOBTRAIL_LOG_LEVEL": "warning",
        "JOBTRAIL_RETAIN_DELIVERIES_DAYS": "0",
        "JOBTRAIL_RETAIN_REJECTED_DAYS": "0",
    }
    python = root / ".venv" / "bin" / "python"
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(python), "-m", "jobtrail.receiver.cli", "serve"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data / "serve.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    url = f"http://127.0.0.1:{port}"
    ready = None
    while ready is None:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    ready = time.perf_counter() - started
        except OSError:
            await asyncio.sleep(0.02)
    polls_at, cpu_at = provider.polls, _cpu_seconds(server.pid)
    probes: list[float] = []
    rss: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        await asyncio.to_thread(lambda: urllib.request.urlopen(f"{url}/healthz", timeout=10).read())
        probes.append((time.perf_counter() - began) * 1000)
        rss.append(_rss_mb(server.pid))
        await asyncio.sleep(0.02)
    cpu = _cpu_seconds(server.pid) - cpu_at
    polls = provider.polls - polls_at
    stop_began = time.perf_counter()
    server.send_signal(signal.SIGTERM)
    await asyncio.to_thread(server.wait, 120)
    stop = time.perf_counter() - stop_began
    grown = _rows(data / "jobtrail.db") - rows_before
    probes.sort()
    print(
        f"{label:8} ready {ready:5.2f} s | healthz p50 {statistics.median(probes):5.1f} p99 "
        f"{probes[int(len(probes) * 0.99) - 1]:6.1f} max {probes[-1]:6.1f} ms | RSS max {max(rss):5.0f} MB | "
        f"CPU {cpu / seconds * 100:4.0f}% | {polls / seconds:6.0f} polls/s | "
        f"+{grown:,} delivery rows | stop {stop:4.1f} s"
    )
    shutil.rmtree(data, ignore_errors=True)


async def main(args: argparse.Namespace) -> None:
    logs.configure(level="warning")
    work = Path(tempfile.mkdtemp(prefix="bench-poller-"))
    source = work / "jobtrail.db"
    began = time.perf_counter()
    await build(source, args.jobs)
    print(
        f"built {args.jobs:,} open Pixazo jobs in {time.perf_counter() - began:.0f} s; {args.seconds:.0f} s each:"
    )
    provider = Provider()
    app = web.Application()
    app.router.add_get("/v2/requests/status/{id}", provider.status)
    runner, port = await serve_app(app)
    try:
        here = Path(__file__).resolve().parents[2]
        await run_one("this", here, source, args.seconds, f"http://127.0.0.1:{port}", provider)
        if args.compare:
            await run_one(
                "compared", args.compare.resolve(), source, args.seconds, f"http://127.0.0.1:{port}", provider
            )
    finally:
        await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--compare", type=Path)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(cli())

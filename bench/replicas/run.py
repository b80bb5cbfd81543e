"""bench/replicas: durable webhook intake on PostgreSQL, one replica and two, against a bare
aiohttp handler under the same wrk load in the same run.

    python -m bench.replicas.run [--seconds 8] [--connections 64] [--rounds 3] [--compare DIR]

Needs a PostgreSQL server (`JOBTRAIL_BENCH_POSTGRES_URL`, else
`JOBTRAIL_TEST_POSTGRES_URL`, else the local one) where it may create and drop a
database, and wrk. Each round runs, back to back: the bare handler; one replica; two
replicas, each given half the connections by a wrk of its own. It prints the rates, p99
and CPU per accepted webhook of the replicas and of PostgreSQL (every `postgres` process,
from /proc: run it on an otherwise idle server), then the medians: one replica's ratio to
bare (target >= 0.45, p99 <= 25 ms), two replicas against one (target >= 1.0 on this
machine: no collapse), and the rate the measured CPU per webhook would allow on 8 and 32
cores if CPU were the only limit (it is not: every append takes the log's lock, see
store/postgres/writes.py). Checks the log afterwards: one event per acknowledged job.

`--compare DIR` adds one replica of another checkout (with its own `.venv`), on a
database of its own, measured in each round right after this code's one replica: this
machine's speed drifts by half within minutes, so only figures from the same rounds
compare two versions of the code. For both it also prints how long a batch took to be
written and committed (the replicas' own `/metrics`): where CPU is short, as on two
cores, that shows a change in round trips that the throughput does not.

Under each one-replica line, where a webhook's time went: its batch's size, the batch's
read and write round trips and the rest of its commit (`jobtrail_store_round_trip_seconds`,
`jobtrail_store_commit_seconds`), what of the p50 is outside the commit, and how much of
a core the replica used (its event loop is one thread: the ceiling is one core).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from bench.ingest.run import HERE as INGEST
from bench.ingest.run import TOKEN, Result, cpu_seconds, free_port, serve_command, wait_up, wrk

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_cpu() -> float:
    """CPU seconds of every process named postgres (user + system), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name.startswith("postgres"):
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def replica(
    database: str, work: Path, n: int, checkout: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """`jobtrail serve` on `database`, from this checkout or from `checkout`."""
    port = free_port()
    (work / f"r{n}").mkdir()
    env = {
        **os.environ,
        "JOBTRAIL_STORE_URL": database,
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(work / f"r{n}"),
        "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
        "JOBTRAIL_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        serve_command(checkout), env=env, stderr=(work / f"r{n}.log").open("w"), cwd=checkout
    )
    return process, port


def both(
    replicas: list[tuple[subprocess.Popen[bytes], int]], seconds: int, connections: int, tag: str
) -> Result:
    """Two wrks at once, one per replica, half the connections each; summed."""
    with_cpu = [cpu_seconds(p.pid) or 0.0 for p, _ in replicas]
    results: list[Result] = []

    def run(i: int) -> None:
        process, port = replicas[i]
        results.append(wrk(process.pid, port, seconds, connections // 2, 1, f"{tag}-{i}"))

    import threading

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = sum(
        (cpu_seconds(p.pid) or 0.0) - before for (p, _), before in zip(replicas, with_cpu, strict=True)
    )
    requests = sum(r.requests for r in results)
    return Result(
        rate=sum(r.rate for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        requests=requests,
        errors=sum(r.errors for r in results),
        cpu_us=1e6 * spent / requests if requests else None,
    )


def show(name: str, r: Result, pg_us: float | None, batch: Batches | None = None) -> None:
    cpu = f"{r.cpu_us:5.0f} us/req jobtrail" if r.cpu_us is not None else ""
    pg = f"  {pg_us:5.0f} us/req PostgreSQL" if pg_us is not None else ""
    commit = f"   commit {batch.commit_ms:5.2f} ms a batch" if batch is not None else ""
    print(
        f"  {name:<24} {r.rate:>8.0f} req/s   p50 {r.p50_ms:6.2f} ms   p99 {r.p99_ms:6.2f} ms   {cpu}{pg}"
        f"{commit}   ({r.requests} requests, {r.errors} non-2xx)"
    )
    if batch is not None and batch.read_ms is not None and batch.write_ms is not None:
        # Where a webhook's time went: its batch's two round trips, the rest of the
        # commit (this process: planning, waiting for its turn on the event loop), and
        # the rest of its latency (HTTP in and out, waiting to join a batch).
        busy = f", replica busy {r.rate * r.cpu_us / 1e6:.2f} of a core" if r.cpu_us is not None else ""
        print(
            f"  {'':<24} {batch.size:>5.1f} a batch: read {batch.read_ms:.2f} + write {batch.write_ms:.2f} "
            f"+ replica {batch.commit_ms - batch.read_ms - batch.write_ms:.2f} ms; "
            f"outside the commit {r.p50_ms - batch.commit_ms:.2f} ms of the p50{busy}"
        )


class Batches(NamedTuple):
    """A replica's group commits between two readings of its /metrics, on average."""

    size: float
    commit_ms: float
    read_ms: float | None  # the round trips (None: a checkout whose /metrics has no such family)
    write_ms: float | None


SUMS = {
    "jobtrail_store_commit_seconds_sum": "commit",
    "jobtrail_store_commit_seconds_count": "batches",
    "jobtrail_store_commit_batch_size_sum": "writes",
    'jobtrail_store_round_trip_seconds_sum{step="read"}': "read",
    'jobtrail_store_round_trip_seconds_sum{step="write"}': "write",
}


def commits(port: int) -> dict[str, float]:
    """A replica's group commits so far, from its /metrics: the sums in `SUMS` it reports."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        SUMS[name]: float(number)
        for name, number in (
            line.rsplit(" ", 1) for line in text.splitlines() if " " in line and line[0] != "#"
        )
        if name in SUMS
    }


def per_batch(before: dict[str, float], after: dict[str, float]) -> Batches | None:
    """The average batch between two readings (None if it committed none, or a checkout
    whose /metrics does not time its commits)."""
    if not {"commit", "batches", "writes"} <= before.keys() & after.keys():
        return None
    batches = after["batches"] - before["batches"]
    if not batches:
        return None

    def ms(name: str) -> float | None:
        if name not in before or name not in after:
            return None
        return 1000 * (after[name] - before[name]) / batches

    commit = ms("commit")
    assert commit is not None
    return Batches((after["writes"] - before["writes"]) / batches, commit, ms("read"), ms("write"))


def measured(run: object, *args: object) -> tuple[Result, float | None]:
    before = postgres_cpu()
    result = run(*args)  # type: ignore[operator]
    spent = postgres_cpu() - before
    return result, (1e6 * spent / result.requests if result.requests else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another checkout, with its .venv, run beside this one")
    args = parser.parse_args()
    for name in ("seconds", "connections", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.compare is not None and not (args.compare / ".venv" / "bin" / "python").exists():
        parser.error(f"--compare {args.compare}: no .venv/bin/python there (install that checkout first)")
    if shutil.which("wrk") is None:
        print("bench/replicas needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    server = (
        os.environ.get("JOBTRAIL_BENCH_POSTGRES_URL")
        or os.environ.get("JOBTRAIL_TEST_POSTGRES_URL")
        or DEFAULT_URL
    )
    names = [f"jobtrail_bench_{os.getpid()}"] + ([f"jobtrail_bench_{os.getpid()}_c"] if args.compare else [])
    try:
        for name in names:
            asyncio.run(admin(server, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"bench/replicas needs PostgreSQL at {server}: {exc}", file=sys.stderr)
        return 2
    database = with_database(server, names[0])
    work = Path(tempfile.mkdtemp(prefix="jobtrail-replicas-"))
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, str(INGEST / "bare.py"), str(bare_port)])
    replicas = [replica(database, work, n) for n in range(2)]
    compared = (
        [replica(with_database(server, names[1]), work, 2, args.compare.resolve())] if args.compare else []
    )
    refused = 0  # webhooks not answered 2xx: then the figures mean nothing
    try:
        wait_up(bare_port, "/")
        for _, port in replicas + compared:
            wait_up(port)
        print(
            f"bench/replicas: wrk -c{args.connections} -d{args.seconds}s, unique Pixazo callbacks, "
            f"{os.cpu_count()} cores, PostgreSQL {server.rsplit('@', 1)[-1]}"
        )
        wrk(bare.pid, bare_port, 2, args.connections, 1, "warm")
        for process, port in replicas + compared:
            wrk(process.pid, port, 2, args.connections, 1, f"warm{port}")
        ones, twos, p99s, cpus, pgs, against, batch_ms, their_ms = [], [], [], [], [], [], [], []
        for round_ in range(1, args.rounds + 1):
            base = wrk(bare.pid, bare_port, args.seconds, args.connections, 1, f"b{round_}")
            process, port = replicas[0]
            before = commits(port)
            one, one_pg = measured(wrk, process.pid, port, args.seconds, args.connections, 1, f"one{round_}")
            one_batch = per_batch(before, commits(port))
            for other, other_port in compared:
                before = commits(other_port)
                theirs, theirs_pg = measured(
                    wrk, other.pid, other_port, args.seconds, args.connections, 1, f"c{round_}"
                )
                their_batch = per_batch(before, commits(other_port))
                against.append(one.rate / theirs.rate)
                refused += theirs.errors
                if one_batch is not None and their_batch is not None:
                    batch_ms.append(one_batch.commit_ms)
                    their_ms.append(their_batch.commit_ms)
            two, two_pg = measured(both, replicas, args.seconds, args.connections, f"two{round_}")
            show(f"bare aiohttp {round_}", base, None)
            show(f"one replica {round_}", one, one_pg, one_batch)
            if compared:
                show(f"compared, one {round_}", theirs, theirs_pg, their_batch)
            show(f"two replicas {round_}", two, two_pg)
            refused += one.errors + two.errors
            ones.append(one.rate / base.rate)
            twos.append(two.rate / one.rate)
            p99s.append(one.p99_ms)
            if one.cpu_us is not None and one_pg is not None:
                cpus.append(one.cpu_us)
                pgs.append(one_pg)
        print(
            f"\n  one replica / bare: median {statistics.median(ones):.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in ones)}; target >= 0.45)   "
            f"p99 median {statistics.median(p99s):.1f} ms (target <= 25 ms)"
        )
        print(
            f"  two replicas / one: median {statistics.median(twos):.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in twos)}; target >= 1.0 here)"
        )
        if against:
            print(
                f"  one replica / compared ({args.compare.name}): median {statistics.median(against):.2f} "
                f"(rounds {', '.join(f'{r:.2f}' for r in against)})"
            )
        if batch_ms:
            print(
                f"  a batch's write and commit: median {statistics.median(batch_ms):.2f} ms, "
                f"compared {statistics.median(their_ms):.2f} ms (from each replica's /metrics)"
            )
        if cpus:
            per = statistics.median(cpus) + statistics.median(pgs)
            print(
                f"  CPU per accepted webhook: jobtrail {statistics.median(cpus):.0f} us, PostgreSQL "
                f"{statistics.median(pgs):.0f} us; if CPU were the only limit: "
                f"{8e6 / per:,.0f} webhooks/s on 8 cores, {32e6 / per:,.0f} on 32"
            )
    finally:
        bare.terminate()
        for process, _ in replicas + compared:
            process.terminate()
        bare.wait(10)
        for process, _ in replicas + compared:
            process.wait(20)
    ok = asyncio.run(log_check(database))
    for name in names:
        asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if refused:
        print(f"\n{refused} webhooks were not answered 2xx: these figures are not intake (logs in {work})")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


async def log_check(database: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(database)
    try:
        events, jobs = await conn.fetchrow("SELECT count(*), count(DISTINCT job_id) FROM events")
        verdicts = dict(await conn.fetch("SELECT verdict, count(*) FROM deliveries GROUP BY verdict"))
    finally:
        await conn.close()
    print(
        f"\nlog check: deliveries {verdicts}, events {events} over {jobs} jobs "
        f"({'one event per job' if events == jobs else 'DUPLICATED EVENTS'})"
    )
    return bool(events == jobs)


if __name__ == "__main__":
    sys.exit(main())

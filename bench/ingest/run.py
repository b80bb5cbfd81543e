"""bench/ingest: durable webhook intake vs a bare aiohttp handler, same load generator, same run.

    python -m bench.ingest.run [--seconds 10] [--connections 64] [--rounds 3] [--compare DIR]

Starts the bare handler and `jobtrail serve` (SQLite, synchronous=FULL, in a temp dir) on
loopback, drives each with wrk (64 connections, unique job ids), then again with every
delivery sent three times. Each mode runs `--rounds` bare/durable pairs back to back (a
single pair on a noisy machine can be off by 20%). Prints both rates, p50/p99 latencies
and the server's CPU time per request (all its threads and its SQLite writer process,
from /proc: the figure that explains the ratio, and steadier than the rates), then the
median ratio and p99. Checks the log afterwards: one event per acknowledged unique job,
nothing duplicated.

`--compare DIR` adds another jobtrail checkout (installed in `DIR/.venv`, say an earlier
commit unpacked with `git archive`) as a third server in every round, with its own
database: its ratio to the same bare runs, and the ratio of this code to it, show a
change's cost without trusting two runs minutes apart.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).parent
TOKEN = "bench-token-0123456789abcdef"


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us: float | None  # the server's CPU time per request in µs (None without /proc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """`app` on a free loopback port: its runner (to clean up) and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def wait_up(port: int, path: str = "/healthz", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not come up")


def millis(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its children (jobtrail's SQLite writer),
    all threads (None where there is no /proc)."""
    total = 0.0
    found = False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            found = True
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total if found else None


def wrk(server: int, port: int, seconds: int, connections: int, copies: int, prefix: str) -> Result:
    cpu_before = cpu_seconds(server)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(HERE / "unique.lua"),
            f"http://127.0.0.1:{port}/webhooks/pixazo/{TOKEN}",
            "--",
            str(copies),
            prefix,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu_after = cpu_seconds(server)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = millis(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = millis(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print(f"    wrk socket errors: {socket_errors.group(1)}")
    cpu_us = None
    if cpu_before is not None and cpu_after is not None and total:
        cpu_us = 1e6 * (cpu_after - cpu_before) / total
    return Result(rate, p50, p99, total, int(errors.group(1)) if errors else 0, cpu_us)


def serve_command(checkout: Path | None) -> list[str]:
    """`jobtrail serve` from this checkout, or from `checkout` with its own venv (a
    checkout from before the `jobtrail.` namespace runs `receiver.cli`)."""
    if checkout is None:
        return [sys.executable, "-m", "jobtrail.receiver.cli", "serve"]
    module = "jobtrail.receiver.cli" if (checkout / "jobtrail" / "__init__.py").exists() else "receiver.cli"
    return [str(checkout / ".venv" / "bin" / "python"), "-m", module, "serve"]


def start(checkout: Path | None, work: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(work),
        "JOBTRAIL_STORE_URL": f"sqlite:///{work / 'bench.db'}",
        "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
        "JOBTRAIL_LOG_LEVEL": "info",
    }
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        serve_command(checkout), env=env, stderr=(work / "serve.log").open("w"), cwd=checkout or None
    )


def log_check(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        verdicts = dict(conn.execute("SELECT verdict, COUNT(*) FROM deliveries GROUP BY verdict"))
        events, jobs = conn.execute("SELECT COUNT(*), COUNT(DISTINCT job_id) FROM events").fetchone()
    print(
        f"log check {db.parent.name}: deliveries {verdicts}, events {events} over {jobs} jobs "
        f"({'one event per job' if events == jobs else 'DUPLICATED EVENTS'})"
    )
    return bool(events == jobs)


def show(name: str, r: Result) -> None:
    cpu = f"{r.cpu_us:5.0f} us CPU/req" if r.cpu_us is not None else "CPU n/a"
    print(
        f"  {name:<28} {r.rate:>9.0f} req/s   p50 {r.p50_ms:6.2f} ms   p99 {r.p99_ms:6.2f} ms"
        f"   {cpu}   ({r.requests} requests, {r.errors} non-2xx)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="bare/durable pairs per mode")
    parser.add_argument("--compare", type=Path, help="another checkout, with its .venv, run beside this one")
    args = parser.parse_args()
    for name in ("seconds", "connections", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.compare is not None and not (args.compare / ".venv" / "bin" / "python").exists():
        parser.error(f"--compare {args.compare}: no .venv/bin/python there (install that checkout first)")
    if shutil.which("wrk") is None:
        print("bench/ingest needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="jobtrail-bench-"))
    bare_port = free_port()
    contenders = {"jobtrail durable intake": (None, work / "this", free_port())}
    if args.compare is not None:
        contenders[f"compared ({args.compare.name})"] = (
            args.compare.resolve(),
            work / "compared",
            free_port(),
        )
    bare = subprocess.Popen([sys.executable, str(HERE / "bare.py"), str(bare_port)])
    servers = {name: start(checkout, folder, port) for name, (checkout, folder, port) in contenders.items()}
    try:
        wait_up(bare_port, "/")
        for _, _, port in contenders.values():
            wait_up(port)
        print(
            f"bench/ingest: wrk -t2 -c{args.connections} -d{args.seconds}s, Pixazo callbacks, "
            f"{os.cpu_count()} cores, SQLite synchronous=FULL in {work}"
        )
        wrk(bare.pid, bare_port, 2, args.connections, 1, "warm")
        for name, (_, _, port) in contenders.items():
            wrk(servers[name].pid, port, 2, args.connections, 1, f"warm{port}")
        for copies, label in ((1, "unique deliveries"), (3, "every delivery x3")):
            print(f"\n{label}:")
            ratios: dict[str, list[float]] = {name: [] for name in contenders}
            p99s: dict[str, list[float]] = {name: [] for name in contenders}
            cpus: dict[str, list[float]] = {name: [] for name in ("bare", *contenders)}
            for round_ in range(1, args.rounds + 1):  # interleaved: the machine drifts
                base = wrk(bare.pid, bare_port, args.seconds, args.connections, copies, f"b{copies}r{round_}")
                show(f"bare aiohttp (no storage) {round_}", base)
                if base.cpu_us is not None:
                    cpus["bare"].append(base.cpu_us)
                for name, (_, _, port) in contenders.items():
                    tag = f"{port}c{copies}r{round_}"
                    durable = wrk(servers[name].pid, port, args.seconds, args.connections, copies, tag)
                    show(f"{name} {round_}", durable)
                    ratios[name].append(durable.rate / base.rate)
                    p99s[name].append(durable.p99_ms)
                    if durable.cpu_us is not None:
                        cpus[name].append(durable.cpu_us)
            for name in contenders:
                print(
                    f"  {name}: ratio to bare median {statistics.median(ratios[name]):.2f} "
                    f"(rounds {', '.join(f'{r:.2f}' for r in ratios[name])}; target >= 0.6)   "
                    f"p99 median {statistics.median(p99s[name]):.1f} ms (target <= 20 ms)"
                    + (f"   CPU/req median {statistics.median(cpus[name]):.0f} us" if cpus[name] else "")
                )
            if args.compare is not None:
                this, other = contenders
                per_round = [a / b for a, b in zip(ratios[this], ratios[other], strict=True)]
                print(
                    f"  this code / compared: median {statistics.median(per_round):.3f} "
                    f"(rounds {', '.join(f'{r:.3f}' for r in per_round)})"
                )
            if cpus["bare"]:
                print(f"  bare CPU/req median {statistics.median(cpus['bare']):.0f} us")
    finally:
        bare.terminate()
        for server in servers.values():
            server.terminate()
        bare.wait(10)
        for server in servers.values():
            server.wait(10)
    ok = all(log_check(folder / "bench.db") for _, folder, _ in contenders.values())
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""bench/stream: what clients of `GET /api/events` that never read cost everyone else,
and how fast `jobtrail serve` stops with 500 streams open.

    python -m bench.stream.run [--clients 250] [--seconds 8] [--subscribers 500] [--compare DIR]

One `jobtrail serve` (SQLite in a temp dir). Each phase drives webhook intake with wrk
(64 connections, unique jobs) while a prober asks `/healthz` every 20 ms on a
connection of its own:

1. quiet: no stream open (the baseline);
2. slow: CLIENTS streams open from the start of the log, none ever reading (a 4 KiB
   receive buffer each), once the server has settled (their buffers filled: the time
   that takes is printed, with `/healthz` meanwhile, and the RSS and kernel TCP memory
   the streams then hold).

It prints for each the intake rate, `/healthz` p50/p99/max, and the server's RSS, then the
ratio slow/quiet. Then it opens SUBSCRIBERS streams that do read, sends SIGTERM and times
the exit. `--compare DIR` runs the same against another checkout (its own `.venv`),
e.g. the code before a change, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.ingest.run import Result, cpu_seconds, free_port, start, wait_up, wrk


@dataclass
class Phase:
    intake: Result
    health_ms: list[float]
    rss_mb: float

    def line(self, name: str) -> str:
        ms = sorted(self.health_ms)
        p99 = ms[int(len(ms) * 0.99)] if ms else float("nan")
        return (
            f"  {name:<7} intake {self.intake.rate:8.0f}/s   /healthz p50 {statistics.median(ms):6.1f} ms"
            f"  p99 {p99:7.1f} ms  max {max(ms):7.1f} ms ({len(ms)} asked)   RSS {self.rss_mb:6.1f} MB"
            f"   ({self.intake.errors} non-2xx)"
        )


def kernel_tcp_kib() -> float:
    """The kernel's memory for TCP buffers, machine-wide (/proc/net/sockstat, in pages):
    what a stream's socket holds is there, not in the server's RSS."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * 4.0
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Prober(threading.Thread):
    """Asks /healthz every 20 ms until stopped; keeps each answer's latency."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.latencies, self.stopped = port, [], threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stopped.is_set():
            started = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.stopped.wait(0.02)
        conn.close()


def phase(pid: int, port: int, seconds: int, prefix: str) -> Phase:
    prober = Prober(port)
    prober.start()
    intake = wrk(pid, port, seconds, 64, 1, prefix)
    prober.stopped.set()
    prober.join()
    return Phase(intake, prober.latencies, rss_mb(pid))


def settle(pid: int) -> float:
    """Seconds until the server is idle again (under 5% CPU for half a second): the new
    streams have read what their buffers hold and wait on their clients."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        before = cpu_seconds(pid) or 0.0
        time.sleep(0.5)
        if (cpu_seconds(pid) or 0.0) - before < 0.025:
            break
    return time.monotonic() - started - 0.5


def events_in(work: Path) -> int:
    """How many events the log holds: what each idle client is sent from the start."""
    with sqlite3.connect(f"file:{work / 'bench.db'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def idle_clients(port: int, count: int) -> list[socket.socket]:
    """`count` streams from the start of the log whose clients never read."""
    clients = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: bench\r\nLast-Event-ID: 0\r\n\r\n")
        clients.append(sock)
    return clients


async def stop_with_subscribers(process: subprocess.Popen[bytes], port: int, count: int) -> float:
    """Open `count` reading streams, SIGTERM the server, and time until it has exited."""
    streams = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: bench\r\n\r\n")
        streams.append((reader, writer))
    for reader, _ in streams:
        await reader.readuntil(b"retry: 2000\n\n")
    drains = [asyncio.ensure_future(reader.read()) for reader, _ in streams]
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, 120)
    except subprocess.TimeoutExpired:
        process.kill()
    took = time.monotonic() - started
    for drain in drains:
        drain.cancel()
    for _, writer in streams:
        writer.close()
    return took


def bench_one(
    name: str, checkout: Path | None, work: Path, args: argparse.Namespace
) -> tuple[Phase, Phase, float]:
    port = free_port()
    process = start(checkout, work, port)
    try:
        wait_up(port)
        tag = "new" if checkout is None else "old"  # in job ids: no '/' or space
        phase(process.pid, port, 2, f"{tag}-warm")  # the log gets some history to stream
        quiet = phase(process.pid, port, args.seconds, f"{tag}-quiet")
        history = events_in(work)
        before, kernel_before = rss_mb(process.pid), kernel_tcp_kib()
        prober = Prober(port)  # /healthz while the streams fill their clients' buffers
        prober.start()
        clients = idle_clients(port, args.clients)
        settled = settle(process.pid)
        prober.stopped.set()
        prober.join()
        filling = sorted(prober.latencies)
        held = rss_mb(process.pid) - before  # what the idle streams hold, before more intake
        kernel = kernel_tcp_kib() - kernel_before
        slow = phase(process.pid, port, args.seconds, f"{tag}-slow")
        for sock in clients:
            sock.close()
        time.sleep(1.0)
        stop = asyncio.run(stop_with_subscribers(process, port, args.subscribers))
    finally:
        if process.poll() is None:
            process.kill()
    print(f"{name}:")
    print(quiet.line("quiet"))
    print(slow.line("slow"))
    print(
        f"  {args.clients} non-reading clients: intake {slow.intake.rate / quiet.intake.rate:.2f}x quiet, "
        f"RSS +{held * 1024 / args.clients:.0f} KiB a client once they settled "
        f"(+{(slow.rss_mb - quiet.rss_mb) * 1024 / args.clients:.0f} KiB by the end of the phase, "
        "intake's growth included)",
        flush=True,
    )
    print(f"  the log held {history} events when the clients connected (each asked from the first)")
    print(f"  and kernel TCP buffers +{kernel / args.clients:.0f} KiB a client (sockets, both ends)")
    print(
        f"  the {args.clients} clients' first reads (their buffers filling) took {settled:.1f} s of the server;"
        f" /healthz meanwhile p99 {filling[int(len(filling) * 0.99)]:.1f} ms, max {filling[-1]:.1f} ms"
    )
    print(f"  SIGTERM with {args.subscribers} streams open: exited in {stop:.2f} s", flush=True)
    return quiet, slow, stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, default=250)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--compare", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobtrail-bench-stream-") as tmp:
        bench_one("this code", None, Path(tmp) / "new", args)
        if args.compare is not None:
            bench_one(f"compare {args.compare}", args.compare, Path(tmp) / "old", args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

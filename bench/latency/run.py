"""bench/latency: from a webhook's 2xx to the signed notification arriving at a local
receiver, at a steady rate; p50 and p99. Baseline: a bare relay that answers 200 and
forwards at once, with no log or outbox, measured in the same run.

    python -m bench.latency.run [--rate 200[,500,...]] [--seconds 10] [--compare DIR]

With a list of rates it runs each in turn and says at which the target held (where the
outbox saturates). `--compare DIR` runs another checkout's `jobtrail serve` beside this
one, each measured at every rate in the same run.

The load is open-loop (job n is sent at t0 + n/rate whatever happened before), so a
slow server cannot hide its queueing. Jobs are Pixazo callbacks reporting FAILED, so the
notification does not wait for a download. `jobtrail serve` runs as its own process on
SQLite with synchronous=FULL. Target: p99 <= 50 ms.
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
import time
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from standardwebhooks import Webhook

from bench.ingest.run import free_port, serve_app, wait_up

TOKEN = "bench-token-0123456789abcdef"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TARGET_P99_MS = 50.0


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.bad = 0

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.perf_counter()
        try:
            doc = Webhook(SECRET).verify(body, dict(request.headers))
        except Exception:
            self.bad += 1
            return web.Response(status=400)
        self.arrived.setdefault(str(doc["data"]["id"]), at)
        return web.Response(status=204)


async def drive(
    port: int, receiver: Receiver, rate: float, seconds: float, prefix: str
) -> tuple[list[float], int]:
    acked: dict[str, float] = {}
    count = int(rate * seconds)
    url = f"http://127.0.0.1:{port}/webhooks/pixazo/{TOKEN}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def send(job_id: str) -> None:
            body = orjson.dumps({"request_id": job_id, "status": "FAILED", "error": "bench"})
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                await response.read()
                if response.status == 200:
                    acked[job_id] = time.perf_counter()

        started = time.perf_counter()
        tasks = []
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(f"{prefix}-{n}")))
        await asyncio.gather(*tasks)
        deadline = time.perf_counter() + 30
        while (
            len([j for j in acked if j in receiver.arrived]) < len(acked) and time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.05)
    latencies = [(receiver.arrived[j] - t) * 1000 for j, t in acked.items() if j in receiver.arrived]
    return latencies, count - len(latencies)


def summary(name: str, latencies: list[float], missing: int) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"  {name:<34} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   max {ordered[-1]:7.2f} ms   ({len(ordered)} arrived, {missing} missing)"
    )
    return p99


def serve(port: int, work: Path, target: str, checkout: Path | None) -> subprocess.Popen[bytes]:
    """`jobtrail serve` of this checkout, or of `checkout` (its code, imported from its
    directory), on a fresh data directory."""
    data = work / (f"data-{port}")
    data.mkdir()
    env = {
        **os.environ,
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(data),
        "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
        "JOBTRAIL_NOTIFY_WEBHOOK_URL": target,
        "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": SECRET,
        "JOBTRAIL_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "jobtrail.receiver.cli", "serve"],
        env=env,
        cwd=checkout,
        stderr=(data / "serve.log").open("w"),
    )


async def main_async(rates: list[float], seconds: float, compare: Path | None) -> int:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    runner, receiver_port = await serve_app(app)
    target = f"http://127.0.0.1:{receiver_port}/hook"
    work = Path(tempfile.mkdtemp(prefix="jobtrail-bench-latency-"))
    relay_port = free_port()
    relay = subprocess.Popen([sys.executable, "-m", "bench.latency.relay", str(relay_port), target, SECRET])
    servers = {"jobtrail": free_port()}
    if compare is not None:
        servers[f"jobtrail at {compare}"] = free_port()
    served = [
        serve(port, work, target, compare if name != "jobtrail" else None) for name, port in servers.items()
    ]
    held: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for port in (relay_port, *servers.values()):
            await asyncio.to_thread(wait_up, port)
        print(
            f"bench/latency: {seconds:g} s at each rate, open loop, {os.cpu_count()} cores, SQLite synchronous=FULL"
        )
        for rate in rates:
            print(f"{rate:g} jobs/s")
            for n, port in enumerate((relay_port, *servers.values())):
                await drive(port, receiver, rate, 1, f"warm-{rate:g}-{n}")
            base = summary(
                "bare relay (no log, no outbox)",
                *await drive(relay_port, receiver, rate, seconds, f"relay-{rate:g}"),
            )
            for name, port in servers.items():
                ours = summary(
                    f"{name}: 2xx -> notification",
                    *await drive(port, receiver, rate, seconds, f"{port}-{rate:g}"),
                )
                print(f"  ratio p99 {name}/relay {ours / base:7.2f}")
                if ours <= TARGET_P99_MS:
                    held[name].append(rate)
        for name, kept in held.items():
            print(
                f"{name}: p99 <= {TARGET_P99_MS:g} ms at {', '.join(f'{r:g}' for r in kept) or 'no rate tried'}/s"
            )
        if receiver.bad:
            print(f"  {receiver.bad} notifications failed verification")
        return 0 if len(held["jobtrail"]) == len(rates) and not receiver.bad else 1
    finally:
        relay.terminate()
        for process in served:
            process.terminate()
        relay.wait(10)
        for process in served:
            process.wait(10)
        await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--rate", type=rates, default=[200.0], help="jobs a second; a list runs each: 500,1000"
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--compare", type=Path, help="another checkout, measured in the same run")
    args = parser.parse_args()
    return asyncio.run(main_async(args.rate, args.seconds, args.compare))


def rates(text: str) -> list[float]:
    try:
        found = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of rates") from None
    if not found or min(found) <= 0:
        raise argparse.ArgumentTypeError("rates must be above 0")
    return found


if __name__ == "__main__":
    sys.exit(main())

"""bench/scale's clients, in a process of their own, as a real API client is: the server's
event loop serves and does nothing else, and each request's time is its round trip over
a loopback socket. `run.py` starts this with a JSON job on stdin and reads the p50/p99s
from stdout.

    {"url": ..., "jobs": N, "since": ISO, "requests": R, "clients": C, "routes": [names] | null}

Prints {"table": [[name, p50, p99], ...], "beside": [p50, p99]}.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bench.scale.routes import routes

LISTS = ("/api/jobs?provider=venice", "/api/outbox?status=dead", "/api/deliveries?verdict=rejected")


async def measure(
    session: aiohttp.ClientSession, url: str, path: Callable[[], str], requests: int, clients: int
) -> list[float]:
    times: list[float] = []

    async def one_client() -> None:
        for _ in range(requests // clients):
            where = path()
            began = time.perf_counter()
            async with session.get(url + where) as answer:
                await answer.read()
            times.append((time.perf_counter() - began) * 1000)
            if answer.status != 200:
                raise SystemExit(f"{where}: HTTP {answer.status}")

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return times


def quantiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def lookup_beside_lists(session: aiohttp.ClientSession, job: dict[str, Any]) -> tuple[float, float]:
    """One client looks jobs up while the others loop on filtered listings."""
    stop = asyncio.Event()

    async def lister() -> None:
        while not stop.is_set():
            async with session.get(job["url"] + random.choice(LISTS)) as answer:
                await answer.read()

    listers = [asyncio.create_task(lister()) for _ in range(job["clients"] - 1)]
    try:
        lookups = routes(job["jobs"], "")["job lookup"]
        return quantiles(await measure(session, job["url"], lookups, job["requests"], 1))
    finally:
        stop.set()
        await asyncio.gather(*listers)


async def run(job: dict[str, Any]) -> dict[str, Any]:
    paths = routes(job["jobs"], job["since"])
    wanted = job.get("routes") or list(paths)
    connector = aiohttp.TCPConnector(limit=job["clients"] * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        table = []
        for name in wanted:
            await measure(session, job["url"], paths[name], 40, job["clients"])  # warm
            times = await measure(session, job["url"], paths[name], job["requests"], job["clients"])
            table.append([name, *quantiles(times)])
        beside = await lookup_beside_lists(session, job)
    return {"table": table, "beside": list(beside)}


def main() -> None:
    print(json.dumps(asyncio.run(run(json.load(sys.stdin)))))


if __name__ == "__main__":
    main()

"""bench/scale's clients, in a process of their own, as a real API client is: the server's
event loop serves and does nothing else, and each request's time is its round trip over
a loopback socket. `run.py` starts this with a JSON job on stdin and reads the p50/p99s
from stdout.

    {"url": ..., "jobs": N, "since": ISO, "requests": R, "clients": C, "rounds": K,
     "routes": [names] | null}

Each route is measured K times over (rounds, one after another): this machine's noise
comes in spells of seconds, in which even `/healthz` takes twice as long, and one round
can fall in one. Prints each route's median p50 and p99 over its rounds and its worst
p99: {"table": [[name, p50, p99, worst p99], ...], "beside": [p50, p99, worst p99]}.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
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


async def rounds(measured: Callable[[], Awaitable[list[float]]], count: int) -> list[float]:
    """The median p50 and p99 of `count` rounds, and the worst p99."""
    found = [quantiles(await measured()) for _ in range(count)]
    p99s = [p99 for _, p99 in found]
    return [statistics.median(p50 for p50, _ in found), statistics.median(p99s), max(p99s)]


async def lookup_beside_lists(session: aiohttp.ClientSession, job: dict[str, Any]) -> list[float]:
    """One client looks jobs up while the others loop on filtered listings."""
    stop = asyncio.Event()

    async def lister() -> None:
        while not stop.is_set():
            async with session.get(job["url"] + random.choice(LISTS)) as answer:
                await answer.read()

    listers = [asyncio.create_task(lister()) for _ in range(job["clients"] - 1)]
    try:
        lookups = routes(job["jobs"], "")["job lookup"]
        return await rounds(lambda: measure(session, job["url"], lookups, job["requests"], 1), job["rounds"])
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

            def measured(name: str = name) -> Awaitable[list[float]]:
                return measure(session, job["url"], paths[name], job["requests"], job["clients"])

            table.append([name, *await rounds(measured, job["rounds"])])
        beside = await lookup_beside_lists(session, job)
    return {"table": table, "beside": beside}


def main() -> None:
    print(json.dumps(asyncio.run(run(json.load(sys.stdin)))))


if __name__ == "__main__":
    main()

"""`jobtrail simulate`: the four provider simulators on their own, for trying `jobtrail
serve`, `jobtrail submit` and the listeners without the providers' real endpoints."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from jobtrail.runtime.signals import stopping_on_signals
from jobtrail.simulators.cluster import Cluster


def settings_for(cluster: Cluster) -> dict[str, str]:
    """What `jobtrail serve` needs to use them: the keys, the base URLs, and loopback
    allowed for result downloads (the simulators serve the results themselves)."""
    return {**cluster.environment(), "JOBTRAIL_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1"}


async def simulate(first_port: int | None, out: TextIO | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    out = out or sys.stdout
    stop = asyncio.Event()
    with stopping_on_signals(stop):
        return await _simulate(first_port, out, stop)


async def _simulate(first_port: int | None, out: TextIO, stop: asyncio.Event) -> int:
    cluster = Cluster.build()
    try:
        await cluster.start(first_port)
    except OSError as exc:
        await cluster.stop()
        print(f"jobtrail: --first-port: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        for name, base in cluster.bases.items():
            print(f"# {name} simulator at {base}", file=out)
        print("# In the shell that runs `jobtrail serve` (and set JOBTRAIL_PUBLIC_URL to", file=out)
        print("# where it listens, so the simulators' webhooks reach it):", file=out)
        for name, value in settings_for(cluster).items():
            print(f"export {name}={value}", file=out)
        print("# Ctrl-C stops the simulators.", file=out, flush=True)
        await stop.wait()
    finally:
        await cluster.stop()
    return 0

"""Running `jobtrail serve` as a real process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports that are free now (the simulators
    take a run of four). A port the kernel handed out is free; the next ones are tried."""
    for _ in range(100):
        first = free_port()
        if first + count <= 65_536 and all(_free(first + n) for n in range(1, count)):
            return first
    raise RuntimeError(f"no {count} free consecutive ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def serve_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` (a fake provider) on a free loopback port; the caller cleans the runner up."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def start_serve(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "jobtrail.receiver.cli", "serve"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{env['JOBTRAIL_PORT']}/healthz"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jobtrail serve exited: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("jobtrail serve did not come up")

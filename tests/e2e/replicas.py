"""Several real `jobtrail serve` processes on one PostgreSQL database, for the replica
tests: started, asked, killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.helpers import free_port

TOKEN = "replica-webhook-token-0123456789"


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Cluster:
    """`n` replicas on `database`, each with its own port and data directory."""

    database: str
    work: Path
    env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    async def start(self, n: int) -> None:
        self.replicas += [self._spawn(len(self.replicas) + i) for i in range(n)]
        for replica in self.replicas:
            await _wait_up(replica)

    def _spawn(self, i: int) -> Replica:
        port = free_port()
        data = self.work / f"replica-{i}"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "JOBTRAIL_STORE_URL": self.database,
            "JOBTRAIL_PORT": str(port),
            "JOBTRAIL_DATA_DIR": str(data),
            "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
            "JOBTRAIL_LOG_FORMAT": "json",
            **self.env,
        }
        log = self.work / f"replica-{i}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "jobtrail.receiver.cli", "serve"],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return Replica(f"replica-{i}", port, process, log)

    @property
    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.process.poll() is None]

    async def stop(self) -> None:
        for replica in self.alive:
            replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                await asyncio.to_thread(replica.process.wait, 20)
            except subprocess.TimeoutExpired:
                replica.process.kill()

    async def get(self, replica: Replica, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(replica.url + path) as answer:
            return await answer.json()


async def _wait_up(replica: Replica) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            if replica.process.poll() is not None:
                raise RuntimeError(f"{replica.name} exited: {replica.log.read_text()[-3000:]}")
            try:
                async with session.get(replica.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)):
                    return
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{replica.name} did not come up")

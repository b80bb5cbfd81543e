"""Killing the process mid-load loses no acknowledged delivery and duplicates none."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.helpers import free_port, start_serve

TOKEN = "crash-test-token-0123456789"
pytestmark = pytest.mark.slow


async def flood(port: int, total: int, acked: list[str], kill_after: int, process: object) -> None:
    url = f"http://127.0.0.1:{port}/webhooks/pixazo/{TOKEN}"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            job = f"crash-{queue.get_nowait()}"
            body = json.dumps({"request_id": job, "status": "PROCESSING"})
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    if r.status == 200:
                        acked.append(job)
                        if len(acked) == kill_after:
                            process.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
            except (TimeoutError, aiohttp.ClientError):
                continue

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(worker(session) for _ in range(64)))


def writers_exit(db: Path, within: float = 10.0) -> bool:
    """True once no SQLite writer process for `db` is left (Linux: read from /proc)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if any(arg.endswith(b"sqlite/writer.py") for arg in args) and str(db).encode() in args:
                alive.append(cmdline)
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_sigkill_during_load_loses_no_acknowledged_delivery(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    port = free_port()
    env = {
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(tmp_path),
        "JOBTRAIL_STORE_URL": f"sqlite:///{db}",
        "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
    }
    process = start_serve(env, tmp_path / "serve.log")
    acked: list[str] = []
    asyncio.run(flood(port, 6000, acked, kill_after=1500, process=process))
    process.wait(10)
    assert -signal.SIGKILL == process.returncode, "the server was not killed mid-load"
    assert 1500 <= len(acked) < 6000, "the kill did not land in the middle of the load"
    if Path("/proc/self").exists():  # where there is no /proc, the writer cannot be seen
        assert writers_exit(db), "the SQLite writer process outlived its server"

    restarted = start_serve(env, tmp_path / "serve.log")
    try:
        with sqlite3.connect(db) as conn:
            counts = dict(conn.execute("SELECT job_id, COUNT(*) FROM events GROUP BY job_id").fetchall())
            accepted = dict(
                conn.execute(
                    "SELECT job_id, COUNT(*) FROM deliveries WHERE verdict = 'accepted' GROUP BY job_id"
                ).fetchall()
            )
            jobs = {row[0] for row in conn.execute("SELECT job_id FROM jobs")}
    finally:
        restarted.terminate()
        restarted.wait(10)
    missing = [job for job in acked if counts.get(job) != 1]
    assert [] == missing
    assert {1} == set(counts.values())
    assert {1} == set(accepted.values())
    assert set(acked) <= jobs
    assert 0 == restarted.returncode

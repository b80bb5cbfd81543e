"""The SQLite writer process (store/sqlite_writer.py): killed, signalled, fed a bad
statement, closed. A real process on a real file each time."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from core.effects import EffectPlanner
from core.model import Delivery, Observation, utcnow
from store import sqlite_process
from store.base import StoreError
from store.sqlite import SQLiteStore
from store.sqlite_process import WriterProcess
from store.sqlite_writer import Batch, Skipped

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def delivery(job_id: str) -> Delivery:
    return Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id)


def processing(job_id: str) -> Observation:
    return Observation("pixazo", job_id, "processing", progress=10)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "writer.db", EffectPlanner())
    await opened.open()
    yield opened
    await opened.close()


def writer_pid(store: SQLiteStore) -> int:
    pid = store._writer.pid
    assert pid is not None, "no writer process is running"
    return pid


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


async def test_a_writer_killed_mid_batch_is_replaced_and_every_intake_still_lands(
    store: SQLiteStore, tmp_path: Path
) -> None:
    first = writer_pid(store)
    await store.intake(delivery("before"), [processing("before")])
    os.kill(first, signal.SIGSTOP)  # the next batch is sent and never answered...
    pending = [
        asyncio.ensure_future(store.intake(delivery(f"j{i}"), [processing(f"j{i}")])) for i in range(50)
    ]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in pending)
    os.kill(first, signal.SIGKILL)  # ...until the writer dies with it in hand
    results = await asyncio.gather(*pending)

    assert writer_pid(store) != first
    assert all(result.events for result in results), "an intake was answered without its event"
    with sqlite3.connect(tmp_path / "writer.db") as conn:
        per_job = dict(conn.execute("SELECT job_id, COUNT(*) FROM events GROUP BY job_id").fetchall())
        seqs = [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert {f"j{i}" for i in range(50)} | {"before"} == set(per_job)
    assert {1} == set(per_job.values())
    assert list(range(1, len(seqs) + 1)) == seqs


async def test_sigint_and_sigterm_leave_the_writer_to_its_parent(store: SQLiteStore) -> None:
    """A Ctrl-C or a service manager's stop reaches the whole process group; the server
    decides when its writer stops (after the last commit), not the signal."""
    pid = writer_pid(store)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.2)
    result = await store.intake(delivery("after-signals"), [processing("after-signals")])
    assert result.events and pid == writer_pid(store)


async def test_closing_the_store_ends_the_writer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "writer.db", EffectPlanner())
    await store.open()
    await store.intake(delivery("j"), [processing("j")])
    pid = writer_pid(store)
    await store.close()
    assert gone(pid)
    assert store._writer.pid is None
    with pytest.raises(StoreError):
        await store._writer.write(Batch(("SELECT 1", (1,)), ("", []), [], []))


async def test_after_a_failed_batch_the_writer_refuses_the_rest_until_resumed(tmp_path: Path) -> None:
    """Batches are sent ahead, each planned on the ones before: once one fails, those
    behind it must not be written. The writer process itself stays up."""
    path = tmp_path / "plain.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x INTEGER NOT NULL)").connection.close()
    writer = WriterProcess(path, ["PRAGMA journal_mode=WAL"])
    await writer.open()
    try:
        pid = writer.pid
        guard = ("SELECT COUNT(*) FROM t", (0,))  # the failed batch leaves nothing behind
        bad = Batch(guard, ("", []), [("INSERT INTO t VALUES (?)", [(1,), (None,)])], [])
        good = Batch(guard, ("", []), [("INSERT INTO t VALUES (?)", [(2,)])], [("SELECT x FROM t", ())])
        failing, behind = asyncio.ensure_future(writer.write(bad)), asyncio.ensure_future(writer.write(good))
        with pytest.raises(StoreError, match="NOT NULL"):
            await failing
        with pytest.raises(Skipped):
            await behind
        await writer.resume()
        assert [[(2,)]] == await writer.write(good)
        assert pid == writer.pid
    finally:
        await writer.close()


async def test_a_writer_that_cannot_open_its_file_fails_open_with_the_reason(tmp_path: Path) -> None:
    writer = WriterProcess(tmp_path / "missing-dir" / "x.db", [])
    with pytest.raises(StoreError, match="cannot open"):
        await writer.open()
    assert writer.pid is None


def writer_on_plain_table(tmp_path: Path) -> tuple[Path, WriterProcess]:
    """A database with one table `t (x TEXT NOT NULL)`, and a writer (not opened) for it."""
    path = tmp_path / "plain.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x TEXT NOT NULL)").connection.close()
    return path, WriterProcess(path, ["PRAGMA journal_mode=WAL"])


def large_insert() -> Batch:
    """About 600 KB in one frame (distinct values: pickle would send a repeated one once)."""
    rows = [(f"{i:06d}" * 170,) for i in range(600)]
    return Batch(("SELECT COUNT(*) FROM t", (0,)), ("", []), [("INSERT INTO t VALUES (?)", rows)], [])


def wait_until_stopped(pid: int) -> None:
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        time.sleep(0.001)


def rows_committed_without_the_loop(path: Path, seconds: float) -> int:
    """Poll table `t` until it has rows or `seconds` pass, blocking: called from a test's
    coroutine, this holds the event loop, so no callback of it runs meanwhile."""
    deadline = time.monotonic() + seconds
    with sqlite3.connect(path) as conn:
        while True:
            count = int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
            if count or time.monotonic() > deadline:
                return count
            time.sleep(0.01)


needs_pipe_sizes = pytest.mark.skipif(
    not hasattr(fcntl, "F_SETPIPE_SZ"), reason="a pipe's capacity is set on Linux only"
)


@needs_pipe_sizes
async def test_a_large_batch_reaches_the_writer_while_the_event_loop_is_busy(tmp_path: Path) -> None:
    """A batch sent while the writer is busy with the last one must not stop at a default
    pipe's 64 KiB: the writer takes and commits all of it while the event loop runs no
    callback (as while it plans the next batch), without waiting for the loop to pass it
    the rest."""
    path, writer = writer_on_plain_table(tmp_path)
    await writer.open()
    pid = writer.pid
    assert pid is not None
    try:
        batch = large_insert()
        os.kill(pid, signal.SIGSTOP)  # busy: reading nothing while the frame is written
        wait_until_stopped(pid)
        sent = asyncio.ensure_future(writer.write(batch))
        await asyncio.sleep(0)  # the frame goes into the pipe as far as it fits
        os.kill(pid, signal.SIGCONT)  # from here the event loop is held
        count = rows_committed_without_the_loop(path, seconds=30)  # milliseconds, normally
        assert 600 == count, "the writer did not get the whole batch without the event loop"
        assert [] == await sent
    finally:
        with contextlib.suppress(ProcessLookupError):  # not to hide why the test failed
            os.kill(pid, signal.SIGCONT)
        await writer.close()


@needs_pipe_sizes
async def test_a_pipe_that_cannot_be_widened_still_carries_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the system refuses the wider pipe (here: a size it cannot take), the writer
    runs on the default one, and says so once."""
    monkeypatch.setattr(sqlite_process, "PIPE_BYTES", -1)
    _, writer = writer_on_plain_table(tmp_path)
    with capture_logs() as logs:
        await writer.open()
    try:
        batch = large_insert()._replace(queries=[("SELECT COUNT(*) FROM t", ())])
        assert [[(600,)]] == await writer.write(batch)
    finally:
        await writer.close()
    assert ["sqlite_writer_pipe_default"] == [e["event"] for e in logs if "pipe" in e["event"]]

"""The SQLite writer process (store/sqlite/writer.py): killed, signalled, fed a bad
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

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.store.base import OutcomeUnknown, StoreError
from jobtrail.store.sqlite import SQLiteStore
from jobtrail.store.sqlite import process as sqlite_process
from jobtrail.store.sqlite import store as sqlite_store
from jobtrail.store.sqlite.process import WriterProcess
from jobtrail.store.sqlite.schema import migrate
from jobtrail.store.sqlite.writer import Batch, Skipped

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


async def replaced(store: SQLiteStore, old: int) -> int:
    """The new writer's pid, once one runs (a guard against a hang, not a speed check)."""
    async with asyncio.timeout(30):
        while store._writer.pid in (None, old):
            await asyncio.sleep(0.01)
    return writer_pid(store)


async def test_a_writer_killed_mid_batch_fails_its_waiters_at_once_and_their_retries_land_once(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Whether the dead writer committed what it had in hand is unknown: its waiters are
    told so at once (an HTTP 503: the provider retries), never left hanging, never
    retried behind their back on a guess. A new writer starts by itself, and each retry
    lands exactly once."""
    first = writer_pid(store)
    await store.intake(delivery("before"), [processing("before")])
    os.kill(first, signal.SIGSTOP)  # the next batch is sent and never answered...
    pending = [
        asyncio.ensure_future(store.intake(delivery(f"j{i}"), [processing(f"j{i}")])) for i in range(50)
    ]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in pending)
    os.kill(first, signal.SIGKILL)  # ...until the writer dies with it in hand
    outcomes = await asyncio.gather(*pending, return_exceptions=True)

    unknown = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, OutcomeUnknown)]
    assert unknown, "the batch the writer had in hand was answered as if committed"
    assert all(isinstance(o, OutcomeUnknown) or o.events for o in outcomes), outcomes  # type: ignore[union-attr]
    assert first != await replaced(store, first)
    await store.ping()
    retried = await asyncio.gather(*(store.intake(delivery(f"j{i}"), [processing(f"j{i}")]) for i in unknown))
    assert all(result.events for result in retried)
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
        await store._writer.write(plain_batch([]))


async def test_after_a_failed_batch_the_writer_refuses_the_rest_until_resumed(tmp_path: Path) -> None:
    """Batches are sent ahead, each planned on the ones before: once one fails, those
    behind it must not be written. The writer process itself stays up."""
    _, writer = writer_on_plain_table(tmp_path)
    await writer.open()
    try:
        pid = writer.pid
        bad = plain_batch([("1",), (None,)])  # NOT NULL: the whole batch fails, nothing kept
        good = plain_batch([("2",)], queries=[("SELECT x FROM t", ())])
        failing, behind = asyncio.ensure_future(writer.write(bad)), asyncio.ensure_future(writer.write(good))
        with pytest.raises(StoreError, match="NOT NULL"):
            await failing
        with pytest.raises(Skipped):
            await behind
        await writer.resume()
        assert [[("2",)]] == (await writer.write(good)).rows
        assert pid == writer.pid
    finally:
        await writer.close()


async def test_a_writer_that_cannot_open_its_file_fails_open_with_the_reason(tmp_path: Path) -> None:
    writer = WriterProcess(tmp_path / "missing-dir" / "x.db", [])
    with pytest.raises(StoreError, match="cannot open"):
        await writer.open()
    assert writer.pid is None


def writer_on_plain_table(tmp_path: Path) -> tuple[Path, WriterProcess]:
    """jobtrail's schema plus one table `t (x TEXT NOT NULL)`, and a writer (not opened)."""
    path = tmp_path / "plain.db"
    migrate(path, ["PRAGMA journal_mode=WAL"])
    sqlite3.connect(path).execute("CREATE TABLE t (x TEXT NOT NULL)").connection.close()
    return path, WriterProcess(path, ["PRAGMA journal_mode=WAL"])


def plain_batch(rows: list[tuple[str | None]], queries: list[tuple[str, tuple[()]]] | None = None) -> Batch:
    """A batch that inserts `rows` into `t` and runs `queries`, and writes nothing else."""
    return Batch(("", []), [], ("", []), ("", []), [("INSERT INTO t VALUES (?)", rows)], queries or [])


def large_insert() -> Batch:
    """About 600 KB in one frame (distinct values: pickle would send a repeated one once)."""
    return plain_batch([(f"{i:06d}" * 170,) for i in range(600)])


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
        assert [] == (await sent).rows
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
        assert [[(600,)]] == (await writer.write(batch)).rows
    finally:
        await writer.close()
    assert ["sqlite_writer_pipe_default"] == [e["event"] for e in logs if "pipe" in e["event"]]


async def test_the_wal_stays_within_its_bound_under_sustained_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background checkpoint alone never starts the WAL over while intake goes on; the
    writer finishes the checkpoint once the WAL passes its bound (here 128 pages, 512 KiB,
    against 64 MiB in service), so the file stays near it however much is written."""
    monkeypatch.setattr(sqlite_store, "WAL_PAGES", 128)
    path = tmp_path / "jobtrail.db"
    store = SQLiteStore(path, EffectPlanner(("slack",)))
    await store.open()
    largest = 0
    try:
        for wave in range(40):  # about 20 MB of WAL frames in all, one at a time: no batching
            for n in range(50):
                await store.intake(delivery(f"w{wave}-{n}"), [processing(f"w{wave}-{n}")])
            largest = max(largest, os.stat(f"{path}-wal").st_size)
    finally:
        await store.close()
    assert largest <= 4 * 128 * 4096, f"the WAL grew to {largest:,} bytes"

"""The SQLite store: the port (store/base.py) over one file in WAL mode.

Writes go through a two-stage group committer (store/batching.py) to the writer process
(store/sqlite/process.py): each batch is planned on the event loop, from the jobs this
store remembers (store/sqlite/known.py) and the plans still in flight, and written as one
transaction, one message to the writer. Reads never wait for writes: they run on the event
loop's own connection while they are short (store/sqlite/onloop.py), else on aiosqlite
connections of their own, each with its thread.

What the memory of jobs may hold is the crux: it must be exactly what is committed. It
is forgotten whenever that is in doubt: a batch whose outcome is unknown (its writer
died, or the batch loop failed with it in flight), another process's write (the writer
notices: `ForeignWrite`), an event the log already has (`Conflict`), a new writer
process. A job not remembered is planned as new; the write checks that it is, and if it
is not (or was removed by retention: its tombstone), the stored job is read and the
batch planned again (`PlanAgain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import structlog

from jobtrail.core.intake import AttemptRecord, IntakeRequest, JobKey, Planner, plan_batch, settle
from jobtrail.core.model import Job, OutboxEntry, utcnow
from jobtrail.store import retention, rows
from jobtrail.store.base import (
    Claim,
    OutcomeUnknown,
    Polls,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    merged,
)
from jobtrail.store.batching import GroupCommitter, PlanAgain
from jobtrail.store.committed import GroupCommitted
from jobtrail.store.retention import Pruned, Removal, Sweep
from jobtrail.store.sql_reads import SQLReads
from jobtrail.store.sqlite import reads
from jobtrail.store.sqlite import writes as sql
from jobtrail.store.sqlite.known import KnownJobs
from jobtrail.store.sqlite.lock import ServerLock
from jobtrail.store.sqlite.onloop import LoopReads
from jobtrail.store.sqlite.process import NotSent, WriterProcess
from jobtrail.store.sqlite.schema import migrate
from jobtrail.store.sqlite.writer import LAST_IDS, Conflict, ForeignWrite, RowsExist

T = TypeVar("T")

SYNCHRONOUS = ("off", "normal", "full", "extra")
# Often, so that little is left for the writer's own checkpoint (bench/ingest against
# the code before the WAL's bound: 0.97-0.98 with a pass a second, 0.99-1.01 with 4).
CHECKPOINT_EVERY = 0.25
# The WAL's bound, in 4 KiB pages (64 MiB): past it the committing writer finishes the
# checkpoint (see `_checkpoint_loop`). Four writers for 20 s, against no bound: 64 MB of
# WAL against 2.7 GB, 108-115k intakes against 90-94k, p99 1.2-1.3 ms against 1.5-1.7.
WAL_PAGES = 16_384
# Batches sent to the writer and not yet answered: the event loop plans the next while the
# writer commits the last, instead of idling until each commit is answered (bench/ingest).
IN_FLIGHT = 2
READERS = 4  # connections for reads, each with its own thread
# A read on the event loop that brought more rows than this lets the loop's other work
# take a turn before its rows are made into objects (`_fetch`).
MANY_ROWS = 20
VACUUM_PAGES = 2000  # free pages given back to the file system after a retention page (8 MiB)

log = structlog.get_logger(__name__)


class SQLiteStore(GroupCommitted, SQLReads):
    queries = reads
    kind = "sqlite"

    def __init__(self, path: str | Path, planner: Planner, *, synchronous: str = "full") -> None:
        super().__init__(planner)
        if synchronous not in SYNCHRONOUS:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._writer = WriterProcess(self.path, self._pragmas(), on_start=self._writer_started)
        self._lock = ServerLock(self.path)
        self._readers: list[aiosqlite.Connection] = []  # reads in parallel: WAL readers do not wait
        self._reading: list[int] = []  # reads in flight on each
        self._on_loop: LoopReads | None = None  # reads on the event loop, while short (`_fetch`)
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._tails: dict[int, Mapping[JobKey, Job]] = {}  # the jobs of each plan in flight, oldest first
        self._known = KnownJobs()
        self._removed: set[JobKey] = set()  # jobs found removed by retention (tombstones are for good)
        self._epoch = 0  # which memory of jobs a plan was made from; moves on when it is forgotten
        self._committer = GroupCommitter[sql.Write, sql.Prepared, sql.Answer](
            self._prepare, self._finish, self._abandon, in_flight=IN_FLIGHT, observe=self._observe_commit
        )

    async def open(self, *, exclusive: bool = False) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                await asyncio.to_thread(self._lock.acquire)
            await asyncio.to_thread(migrate, self.path, self._pragmas())
            await self._writer.open()
            for _ in range(READERS):
                self._readers.append(await self._connect())
                self._reading.append(0)
            self._checkpointer = await self._connect()
            self._on_loop = LoopReads(self.path)
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._committer.start()
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="sqlite-checkpoints")

    async def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database 4 times a second, on a connection of its own.

        A PASSIVE checkpoint never blocks the writer, so it does the bulk of the copying
        off the write path. It cannot start the WAL over, though: while intake goes on,
        frames arrive behind every pass, and the file only grows (measured: 2.7 GB in
        20 s of sustained intake). So the writer also checkpoints, inside the commit
        that takes the WAL past `WAL_PAGES`: only what this loop has not copied yet is
        left, and once the writer has copied it, its next transaction starts the WAL
        from the beginning (truncated back to that size).
        """
        conn = self._conn(self._checkpointer)
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            try:
                await conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except aiosqlite.Error as exc:
                log.warning("sqlite_checkpoint_failed", error=str(exc))

    def _pragmas(self) -> list[str]:
        return [
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={self.synchronous.upper()}",
            "PRAGMA busy_timeout=10000",
            f"PRAGMA wal_autocheckpoint={WAL_PAGES}",
            f"PRAGMA journal_size_limit={WAL_PAGES * 4096}",
            "PRAGMA foreign_keys=ON",
        ]

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in self._pragmas():
            await conn.execute(pragma)
        return conn

    async def close(self) -> None:
        await self._committer.close()
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
            self._checkpoints = None
        readers, self._readers, self._reading = self._readers, [], []
        for conn in (self._checkpointer, *readers):
            if conn is not None:
                await conn.close()
        self._checkpointer = None
        if self._on_loop is not None:
            self._on_loop.close()
            self._on_loop = None
        await self._writer.close()
        self._lock.release()

    # -- writes ------------------------------------------------------------------------

    async def claim(self, claim: Claim) -> list[OutboxEntry]:
        return cast("list[OutboxEntry]", await self._committer.submit(claim))

    async def has_due(self, claim: Claim) -> bool:
        return bool(await self._fetch(sql.DUE, sql.due_params(claim._replace(limit=1))))

    async def renew(self, owner: str, entry_ids: Collection[int], until: datetime) -> list[int]:
        if not entry_ids:
            return []
        return cast("list[int]", await self._committer.submit(sql.Renew(owner, entry_ids, until)))

    async def release(self, owner: str) -> int:
        return len(cast("list[int]", await self._committer.submit(sql.Release(owner))))

    async def record_polls(self, polls: Sequence[Polls]) -> int:
        if not polls:
            return 0
        return len(cast("list[int]", await self._committer.submit(sql.Polled(merged(polls)))))

    async def _prepare(self, requests: Sequence[sql.Write]) -> sql.Prepared:
        """Plan a batch on top of what is committed plus the batches in flight (`_tails`).

        Jobs come from the plans in flight, newest first, then from the jobs this store
        remembers (`_known`); any other job is planned as new, and the write checks that
        it is. So planning never waits for a read. Commands are not planned: they run as
        statements at the end of the transaction.
        """
        commands = [r for r in requests if isinstance(r, sql.COMMANDS)]
        writes = (
            [r for r in requests if not isinstance(r, sql.COMMANDS)]
            if commands
            else cast("Sequence[IntakeRequest | AttemptRecord]", requests)
        )
        jobs: dict[JobKey, Job] = {}
        new_jobs: dict[JobKey, None] = {}  # ordered, each once
        removed: set[JobKey] = set()
        tails, known, tombstones = [*reversed(self._tails.values())], self._known, self._removed
        for request in writes:
            if type(request) is not IntakeRequest:  # an attempt record plans no job
                continue
            for obs in request.observations:  # IntakeRequest.job_keys, without its generator
                key = (obs.provider, obs.job_id)
                if key not in jobs and key not in new_jobs:
                    job = None
                    for tail in tails:
                        if (job := tail.get(key)) is not None:
                            break
                    job = job or known.get(key)
                    if job is not None:
                        jobs[key] = job
                    elif tombstones and key in tombstones:
                        removed.add(key)
                    else:
                        new_jobs[key] = None
        plan = plan_batch(writes, jobs, self.planner, utcnow(), removed)
        prepared = sql.prepare(plan, requests, list(new_jobs), self._epoch)
        self._tails[id(plan.jobs)] = plan.jobs
        return prepared

    async def _finish(self, prepared: sql.Prepared) -> Sequence[sql.Answer]:
        """Write a prepared batch in one transaction: one message to the writer process."""
        plan = prepared.plan
        try:
            await self._writer.ready()  # a new writer process forgets the memory of jobs...
            if prepared.epoch != self._epoch:  # ...and what was planned from it
                raise PlanAgain("planned before the writer process restarted")
            try:
                written = await self._writer.write(prepared.batch)
            except NotSent as exc:  # it died just now: the next one takes the batch
                raise PlanAgain(str(exc)) from exc
        except RowsExist as exc:
            self._tails.pop(id(plan.jobs), None)
            found = [
                row for query in reads.jobs_by_key(prepared.new_jobs) for row in await self._fetch(*query)
            ]
            gone = await self._fetch(*reads.removed_by_key(prepared.new_jobs))
            if not found and not gone:
                raise StoreError(f"SQLite write failed: {exc}") from exc
            self._known.learn(((job.provider, job.id), job) for job in map(rows.job_from, found))
            self._removed.update((provider, job_id) for provider, job_id in gone)
            raise PlanAgain(f"{len(found) + len(gone)} jobs planned as new exist or were removed") from exc
        except (ForeignWrite, Conflict) as exc:
            self._tails.pop(id(plan.jobs), None)
            self._forget()
            if isinstance(exc, ForeignWrite):
                self._heard(appended=True, outbox=True)  # another process wrote: look again
            raise PlanAgain(str(exc)) from exc
        except OutcomeUnknown:
            raise  # the plan stays in `_tails`: `_abandon` forgets what it may have changed
        except Exception:
            self._tails.pop(id(plan.jobs), None)  # refused or not sent: nothing was written
            raise
        self._known.learn(plan.jobs)
        self._tails.pop(id(plan.jobs), None)
        self.events_appended += sum(1 for e in plan.events if e.attempt not in written.refused)
        self._heard(appended=bool(plan.events), outbox=bool(plan.outbox or plan.attempts))
        results: list[sql.Answer] = list(
            settle(
                plan,
                range(written.first_delivery, written.first_delivery + len(plan.deliveries)),
                written.first_seq,
                written.refused,
            )
        )
        if not written.rows:
            return results
        queried = iter(written.rows)
        planned = iter(results)
        return [
            sql.command_result(request, next(queried)) if isinstance(request, sql.COMMANDS) else next(planned)
            for request in prepared.requests
        ]

    def _forget(self) -> None:
        self._known.forget()
        self._epoch += 1

    def _writer_started(self) -> None:
        """A new writer process: what the old one committed last may be unknown here."""
        self._forget()

    async def _abandon(self) -> None:
        """After a failed write: forget what the plans in flight assumed (the next batch is
        planned from committed state, and if a plan's outcome is unknown, from the file),
        and let the writer take batches again (it refused those sent behind the failed
        one)."""
        if self._tails:
            self._tails.clear()
            self._forget()
        await self._writer.resume()

    # -- reads -------------------------------------------------------------------------

    async def _fetch(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """On the event loop's own connection while the read is short (`onloop.py`), else
        on a reader thread. A read that brought more than MANY_ROWS rows lets the loop's
        other work take a turn before its rows are made into objects, so that a page of a
        listing does not hold up a job lookup for all of its time."""
        if self._on_loop is None:
            raise StoreClosed("the store is not open")
        found = self._on_loop.read(query, params)
        if found is None:
            return await self._fetch_on_thread(query, params)
        if len(found) > MANY_ROWS:
            await asyncio.sleep(0)
        return found

    async def count(self, table: str) -> int:
        """On a reader thread: counting a whole table is one step of SQLite's program,
        which the progress handler cannot stop."""
        return int((await self._fetch_on_thread(reads.count(table), ()))[0][0])

    async def _fetch_on_thread(self, query: str, params: Sequence[Any]) -> list[Any]:
        """On the reader connection with the fewest reads in flight: a slow read (a long
        listing, the overview's counts) holds up only what lands behind it, not every
        job lookup."""
        readers, reading = self._readers, self._reading
        if not readers:
            raise StoreClosed("the store is not open")
        which = min(range(len(readers)), key=reading.__getitem__)
        reading[which] += 1
        try:
            return list(await readers[which].execute_fetchall(query, params))
        except aiosqlite.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc
        finally:
            if self._reading is reading:  # not closed meanwhile
                reading[which] -= 1

    # -- retention -----------------------------------------------------------------------

    async def prune_deliveries(
        self, after: int, raw_before: datetime, rejected_before: datetime, page: int = 500
    ) -> Pruned:
        """On a connection of its own, in one short transaction beside the writer's (it
        waits for the write lock like any writer). Old rows only: the log's end, which
        the writer watches for other processes' writes, does not move."""

        def work() -> Pruned:
            with self._side_connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                found = conn.execute(reads.PRUNE_PAGE, (after, page)).fetchall()
                shown = ((i, v, datetime.fromisoformat(at)) for i, v, at in found)
                decision = retention.decide(shown, after, raw_before, rejected_before, page)
                if gone := decision.delete:
                    conn.execute(reads.DELETE_DELIVERIES.format(",".join("?" * len(gone))), gone)
                conn.execute("COMMIT")
                if gone:
                    # Give the emptied pages back. (executescript runs it to its end;
                    # `execute` would take one step, and free one page.)
                    conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
                return decision.pruned()

        return await self._retention(work)

    async def prune_notifications(self, after: int, before: datetime, page: int = 500) -> Sweep:
        """On a connection of its own, like `prune_deliveries`. The writer remembers no
        outbox item: nothing of it is stale after."""

        def work() -> Sweep:
            with self._side_connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                found = conn.execute(reads.NOTIFICATIONS_PAGE, (after, page)).fetchall()
                sweep = retention.choose_notifications(
                    (
                        (i, k, s, datetime.fromisoformat(c), datetime.fromisoformat(u))
                        for i, k, s, c, u in found
                    ),
                    after,
                    before,
                    page,
                )
                if gone := sweep.delete:
                    conn.execute(reads.DELETE_NOTIFICATIONS.format(",".join("?" * len(gone))), gone)
                    _repack(conn, found[0][0], found[-1][0])
                conn.execute("COMMIT")
                if gone:
                    conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
                return sweep

        return await self._retention(work)

    async def remove_jobs(self, after: int, before: datetime, page: int = 500) -> Removal:
        """On a connection of its own, like `prune_deliveries`. Each removal leaves a
        tombstone whose id moves the log's end as the writer sees it: its next batch is
        refused unwritten and planned again from the file, so no job it remembers is
        written back. A job holding the log's last event, delivery or outbox item stays
        until the log moves on (ids are the next after the last: they would be handed out
        again)."""

        def work() -> Removal:
            with self._side_connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                last_delivery, last_seq, _ = conn.execute(LAST_IDS).fetchone()
                [last_item] = conn.execute(reads.LAST_OUTBOX).fetchone()
                found = conn.execute(reads.JOBS_PAGE, (after, page)).fetchall()
                choice = retention.choose_jobs(
                    (
                        (jid, p, j, s, datetime.fromisoformat(c), datetime.fromisoformat(u), bool(busy))
                        for jid, p, j, s, c, u, busy in found
                    ),
                    after,
                    before,
                    page,
                )
                stamp, removed = rows.stamp(utcnow()), []
                for jid, provider, job_id in choice.remove:
                    seq, delivery, item = conn.execute(reads.JOB_ENDS, (provider, job_id)).fetchone()
                    if seq == last_seq or delivery == last_delivery or item == last_item:
                        continue
                    for statement in reads.REMOVE_JOB:  # ?1 provider, ?2 job id, ?3 the time (the last only)
                        conn.execute(statement, (provider, job_id, stamp)[: statement.count("?")])
                    removed.append((jid, provider, job_id))
                conn.execute("COMMIT")
                if removed:
                    conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
                return choice._replace(remove=removed)

        return await self._retention(work)

    async def _retention(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite retention could not write now: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite retention failed: {exc}") from exc

    @contextlib.contextmanager
    def _side_connection(self) -> Iterator[sqlite3.Connection]:
        """A connection beside the writer's (blocking: use it in a thread), closed after."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in self._pragmas():
                conn.execute(pragma)
            yield conn
        finally:
            conn.close()

    # -- a whole log, as rows (jobtrail store copy) -------------------------------------

    async def load(self, table: str, batch: Sequence[tuple[Any, ...]]) -> None:
        """On a connection of its own, in one transaction. To this store's writer process
        the rows are another process's write: it notices and plans from the file again."""
        insert, kept = reads.insert(table)
        values = [[text[n] for n in kept] for text in (rows.text_row(table, row) for row in batch)]

        def write() -> None:
            with self._side_connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, values)
                conn.execute("COMMIT")

        try:
            await asyncio.to_thread(write)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite load into {table} failed: {exc}") from exc
        self._forget()

    async def ping(self) -> None:
        """Ready to take writes: the batching loop runs, a writer process answers, a read
        works. `StoreUnavailable` with the reason otherwise."""
        if not self._committer.running:
            raise StoreClosed("the store is not open")
        problem = self._writer.problem
        if problem is not None:
            raise StoreUnavailable(problem)
        await self._fetch(reads.PING)

    @staticmethod
    def _conn(conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise StoreClosed("the store is not open")
        return conn


def _repack(conn: sqlite3.Connection, first: int, last: int) -> None:
    """Write the outbox items left between `first` and `last` again, in the same
    transaction and unchanged. The notifications just deleted sat between the downloads
    that stay, and SQLite merges a page only once it is two-thirds empty: without this
    the pages stay half full for good (about 230 bytes a job). Rows deleted and inserted
    again in id order fill their pages, and the pages left empty are given back."""
    kept = conn.execute(reads.OUTBOX_SPAN, (first, last)).fetchall()
    conn.execute(reads.DELETE_OUTBOX_SPAN, (first, last))
    if kept:
        conn.executemany(reads.INSERT_OUTBOX_ROW.format(",".join("?" * len(kept[0]))), kept)

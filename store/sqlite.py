"""The embedded backend: one SQLite file in WAL mode.

Writes go through one connection in a process of its own (store/sqlite_writer.py) and a
two-stage group committer (store/batching.py): each batch is one `BEGIN IMMEDIATE ...
COMMIT`, sent to the writer as one message however many deliveries it holds, with
`synchronous=FULL` by default so a commit survives power loss, not just a crash. The next
batch is planned while one is written, from the jobs this writer remembers
(store/known.py), so planning never waits for a read. Reads use aiosqlite connections of
their own and never wait for writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite
import structlog

from core.intake import AttemptRecord, IntakeRequest, JobKey, Planner, WriteRequest, plan_batch
from core.model import Delivery, Event, IntakeResult, Job, Observation, OutboxEntry, Status, utcnow
from store import rows
from store import sqlite_writes as sql
from store.base import Claim, Page, Store, StoredDelivery, StoreError
from store.batching import GroupCommitter, PlanAgain
from store.known import KnownJobs
from store.sqlite_process import WriterProcess
from store.sqlite_schema import migrate
from store.sqlite_writer import ForeignWrite, RowsExist

SYNCHRONOUS = ("off", "normal", "full", "extra")
CHECKPOINT_EVERY = 1.0
# Batches sent to the writer and not yet answered: the event loop plans the next while the
# writer commits the last, instead of idling until each commit is answered (bench/ingest).
IN_FLIGHT = 2

log = structlog.get_logger(__name__)

_COMMANDS = (Claim, sql.Release)  # statements, not planned rows


class SQLiteStore(Store):
    def __init__(self, path: str | Path, planner: Planner, *, synchronous: str = "full") -> None:
        super().__init__(planner)
        if synchronous not in SYNCHRONOUS:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._writer = WriterProcess(self.path, self._pragmas())
        self._reader: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._tails: dict[int, Mapping[JobKey, Job]] = {}  # the jobs of each plan in flight, oldest first
        self._known = KnownJobs()
        self._next_ids: tuple[int, int] | None = None
        self._committer = GroupCommitter[sql.Write, sql.Prepared, sql.Result](
            self._prepare, self._finish, self._abandon, in_flight=IN_FLIGHT
        )

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(migrate, self.path, self._pragmas())
            await self._writer.open()
            self._reader = await self._connect()
            self._checkpointer = await self._connect()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._committer.start()
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="sqlite-checkpoints")

    async def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database every second, on a connection of its own.

        The writer's automatic checkpoint is off: it would run inside a COMMIT and make
        that intake wait for the copy. A PASSIVE checkpoint never blocks the writer.
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
            "PRAGMA wal_autocheckpoint=0",  # checkpoints run off the write path
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
        for conn in (self._checkpointer, self._reader):
            if conn is not None:
                await conn.close()
        self._reader = self._checkpointer = None
        await self._writer.close()

    # -- writes ------------------------------------------------------------------------

    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        result = await self._committer.submit(IntakeRequest(delivery, tuple(observations)))
        assert isinstance(result, IntakeResult)
        return result

    async def intake_many(self, requests: Sequence[IntakeRequest]) -> list[IntakeResult]:
        results = await self._committer.submit_many(requests)
        return [r for r in results if isinstance(r, IntakeResult)]

    async def reject(self, delivery: Delivery, reason: str) -> int:
        return (await self.intake_many([IntakeRequest(delivery, rejection=reason)]))[0].delivery_id

    async def claim(self, claim: Claim) -> list[OutboxEntry]:
        result = await self._committer.submit(claim)
        assert isinstance(result, list)
        return [entry for entry in result if isinstance(entry, OutboxEntry)]

    async def has_due(self, claim: Claim) -> bool:
        return bool(await self._fetch(sql.DUE, sql.due_params(claim._replace(limit=1))))

    async def release_leases(self) -> int:
        result = await self._committer.submit(sql.Release())
        assert isinstance(result, list)
        return len(result)

    async def record_attempt(self, record: AttemptRecord) -> Event | None:
        result = await self._committer.submit(record)
        assert result is None or isinstance(result, Event)
        return result

    async def _prepare(self, requests: Sequence[sql.Write]) -> sql.Prepared:
        """Plan a batch on top of what is committed plus the batches in flight (`_tails`).

        Jobs come from the plans in flight, newest first, then from the jobs this writer
        has committed (`_known`); any other job is planned as new, and the write checks
        that it is. So planning never waits for a read. Claims are not planned: they run
        as statements at the end of the transaction.
        """
        if self._next_ids is None:
            found = await self._fetch(sql.LAST_IDS)
            self._next_ids = (found[0][0] + 1, found[0][1] + 1)
        commands = [r for r in requests if isinstance(r, _COMMANDS)]
        writes: Sequence[WriteRequest] = (
            [r for r in requests if not isinstance(r, _COMMANDS)]
            if commands
            else cast("Sequence[WriteRequest]", requests)
        )
        jobs: dict[JobKey, Job] = {}
        new_jobs: dict[JobKey, None] = {}  # ordered, each once
        tails, known = [*reversed(self._tails.values())], self._known
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
                    if job is None:
                        new_jobs[key] = None
                    else:
                        jobs[key] = job
        first_delivery, first_seq = self._next_ids
        plan = plan_batch(writes, jobs, first_delivery, first_seq, self.planner, utcnow())
        after = (first_delivery - 1, first_seq - 1)
        prepared = sql.prepare(plan, after, requests, list(new_jobs))
        self._tails[id(plan.jobs)] = plan.jobs
        self._next_ids = (first_delivery + len(plan.deliveries), first_seq + len(plan.events))
        return prepared

    async def _finish(self, prepared: sql.Prepared) -> Sequence[sql.Result]:
        """Write a prepared batch in one transaction: one message to the writer process."""
        try:
            claimed_rows = await self._writer.write(prepared.batch)
        except RowsExist as exc:
            found = [
                row
                for query, params in sql.job_queries(prepared.new_jobs)
                for row in await self._fetch(query, params)
            ]
            if not found:
                raise
            self._known.learn(((job.provider, job.id), job) for job in map(rows.job_from, found))
            raise PlanAgain(f"{len(found)} jobs planned as new exist") from exc
        except ForeignWrite:
            self._known.forget()
            raise
        self._known.learn(prepared.plan.jobs)
        self._tails.pop(id(prepared.plan.jobs), None)
        self._committed(prepared.plan)
        if not claimed_rows:
            return prepared.plan.results
        claimed = iter(claimed_rows)
        planned = iter(prepared.plan.results)
        results: list[sql.Result] = []
        for request in prepared.requests:
            if isinstance(request, Claim):
                results.append(sql.claimed(next(claimed)))
            elif isinstance(request, sql.Release):
                results.append([row[0] for row in next(claimed)])
            else:
                results.append(next(planned))
        return results

    async def _abandon(self) -> None:
        """After a failed write: forget what the plans in flight assumed (the next batch is
        planned from committed state), and let the writer take batches again (it refused
        those sent behind the failed one)."""
        self._tails.clear()
        self._next_ids = None
        await self._writer.resume()

    # -- reads -------------------------------------------------------------------------

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._conn(self._reader)
        try:
            return list(await conn.execute_fetchall(sql, params))
        except aiosqlite.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc

    async def get_job(self, provider: str, job_id: str) -> Job | None:
        found = await self._fetch(
            f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE provider = ? AND job_id = ?",
            (provider, job_id),
        )
        return rows.job_from(found[0]) if found else None

    async def list_jobs(
        self,
        *,
        provider: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        where, params = ["1 = 1"], []
        if provider is not None:
            where.append("provider = ?")
            params.append(provider)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if cursor is not None:
            where.append("jid < ?")
            params.append(str(rows.decode_cursor(cursor)))
        found = await self._fetch(
            f"SELECT {rows.JOB_COLUMNS}, jid FROM jobs WHERE {' AND '.join(where)} ORDER BY jid DESC LIMIT ?",
            [*params, limit + 1],
        )
        more = len(found) > limit
        found = found[:limit]
        next_cursor = rows.encode_cursor(found[-1][-1]) if more and found else None
        return Page([rows.job_from(row) for row in found], next_cursor)

    async def open_jobs(self, provider: str, limit: int = 100_000) -> list[Job]:
        found = await self._fetch(
            f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE provider = ? AND status IN (?, ?) "
            "ORDER BY jid LIMIT ?",
            (provider, Status.QUEUED.value, Status.PROCESSING.value, limit),
        )
        return [rows.job_from(row) for row in found]

    async def job_events(
        self, provider: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        found = await self._fetch(
            f"SELECT {rows.EVENT_COLUMNS} FROM events WHERE provider = ? AND job_id = ? "
            "AND seq > ? ORDER BY seq LIMIT ?",
            (provider, job_id, after, limit),
        )
        return [rows.event_from(row) for row in found]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        found = await self._fetch(
            f"SELECT {rows.EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [rows.event_from(row) for row in found]

    async def outbox_for_job(self, provider: str, job_id: str) -> list[OutboxEntry]:
        found = await self._fetch(
            f"SELECT {rows.OUTBOX_COLUMNS} FROM outbox WHERE provider = ? AND job_id = ? ORDER BY id",
            (provider, job_id),
        )
        return [rows.outbox_from(row) for row in found]

    async def outbox(
        self,
        *,
        status: str | None = None,
        sink: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        after: int = 0,
    ) -> list[OutboxEntry]:
        where: list[str] = ["id > ?"]
        params: list[Any] = [after]
        for clause, value in (
            ("status = ?", status),
            ("sink = ?", sink),
            ("created_at >= ?", rows.stamp(since) if since else None),
            ("created_at < ?", rows.stamp(until) if until else None),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        found = await self._fetch(
            f"SELECT {rows.OUTBOX_COLUMNS} FROM outbox WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            [*params, limit],
        )
        return [rows.outbox_from(row) for row in found]

    async def outbox_entry(self, entry_id: int) -> OutboxEntry | None:
        found = await self._fetch(f"SELECT {rows.OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (entry_id,))
        return rows.outbox_from(found[0]) if found else None

    async def disabled_sinks(self) -> dict[str, str]:
        found = await self._fetch("SELECT name, reason FROM sinks WHERE disabled_at IS NOT NULL")
        return {name: reason or "" for name, reason in found}

    async def deliveries(
        self, *, provider: str | None = None, job_id: str | None = None, limit: int = 1000
    ) -> list[StoredDelivery]:
        where, params = ["1 = 1"], []
        if provider is not None:
            where.append("provider = ?")
            params.append(provider)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        found = await self._fetch(
            f"SELECT {rows.DELIVERY_COLUMNS} FROM deliveries WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            [*params, limit],
        )
        return [rows.delivery_from(row) for row in found]

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    @staticmethod
    def _conn(conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise StoreError("the store is not open")
        return conn

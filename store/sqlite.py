"""The embedded backend: one SQLite file in WAL mode, through aiosqlite.

Writes go through one connection and a group committer: each batch is one
`BEGIN IMMEDIATE ... COMMIT` (a handful of statements however many deliveries it holds),
with `synchronous=FULL` by default so a commit survives power loss, not just a crash.
Reads use a second connection and never wait for writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from core.intake import IntakeRequest, JobKey, Plan, Planner, plan_batch
from core.model import Delivery, Event, IntakeResult, Job, Observation, OutboxEntry, Status, utcnow
from store import migrations, rows
from store.base import Page, SchemaTooNew, Store, StoredDelivery, StoreError
from store.batching import GroupCommitter

SYNCHRONOUS = ("off", "normal", "full", "extra")


class SQLiteStore(Store):
    def __init__(self, path: str | Path, planner: Planner, *, synchronous: str = "full") -> None:
        super().__init__(planner)
        if synchronous not in SYNCHRONOUS:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._committer = GroupCommitter[IntakeRequest, IntakeResult](self._commit)

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = await self._connect()
            await self._migrate(self._writer)
            self._reader = await self._connect()
        except (OSError, aiosqlite.Error) as exc:
            await self.close()
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._committer.start()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        rows_ = await conn.execute_fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        current = int(next(iter(rows_))[0])
        known = migrations.load("sqlite")
        if current > len(known):
            raise SchemaTooNew(
                f"database {self.path} has schema version {current}, newer than this "
                f"jobtrail knows ({len(known)}); upgrade jobtrail"
            )
        for migration in known[current:]:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (migration.version, migration.name, utcnow().isoformat()),
                )
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        await self._committer.close()
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.close()
        self._writer = self._reader = None

    # -- writes ------------------------------------------------------------------------

    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        return await self._committer.submit(IntakeRequest(delivery, tuple(observations)))

    async def intake_many(self, requests: Sequence[IntakeRequest]) -> list[IntakeResult]:
        return await self._committer.submit_many(requests)

    async def reject(self, delivery: Delivery, reason: str) -> int:
        result = await self._committer.submit(IntakeRequest(delivery, rejection=reason))
        return result.delivery_id

    async def _commit(self, requests: Sequence[IntakeRequest]) -> Sequence[IntakeResult]:
        """One transaction for a batch, in three round trips to the connection's thread.

        aiosqlite runs calls in the order they are queued, so statements that do not depend
        on each other are queued together and awaited once: under load every round trip
        waits for a full turn of the event loop, so their number bounds throughput.
        COMMIT is queued only after every write succeeded.
        """
        conn = self._conn(self._writer)
        keys = sorted({key for request in requests for key in request.job_keys()})
        try:
            _, ids, *found = await _pipeline(
                conn.execute("BEGIN IMMEDIATE"),
                conn.execute_fetchall(
                    "SELECT (SELECT COALESCE(MAX(id), 0) FROM deliveries),"
                    " (SELECT COALESCE(MAX(seq), 0) FROM events)"
                ),
                *(conn.execute_fetchall(sql, params) for sql, params in _job_queries(keys)),
            )
            last_delivery, last_seq = next(iter(ids))
            jobs = {(job.provider, job.id): job for rows_ in found for job in map(rows.job_from, rows_)}
            plan = plan_batch(requests, jobs, last_delivery + 1, last_seq + 1, self.planner, utcnow())
            await _pipeline(*self._writes(conn, plan))
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(aiosqlite.Error, ValueError):
                await conn.execute("ROLLBACK")
            raise
        if plan.events:
            self._notify_appended()
        return plan.results

    def _writes(self, conn: aiosqlite.Connection, plan: Plan) -> list[Awaitable[Any]]:
        writes: list[Awaitable[Any]] = [
            conn.executemany(
                f"INSERT INTO deliveries ({rows.DELIVERY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [rows.delivery_row(d.id, d.delivery, d.verdict, d.reason) for d in plan.deliveries],
            )
        ]
        if plan.events:
            writes.append(
                conn.executemany(
                    f"INSERT INTO events ({rows.EVENT_COLUMNS}, fingerprint) VALUES (?,?,?,?,?,?,?,?,?)",
                    [rows.event_row(e.event, e.fingerprint) for e in plan.events],
                )
            )
        if plan.jobs:
            writes.append(
                conn.executemany(
                    f"INSERT INTO jobs ({rows.JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, "
                    "progress = excluded.progress, result_urls = excluded.result_urls, "
                    "error = excluded.error, provider_status = excluded.provider_status, "
                    "terminals = excluded.terminals, params = excluded.params, seen = excluded.seen, "
                    "updated_at = excluded.updated_at",
                    [rows.job_row(job) for job in plan.jobs.values()],
                )
            )
        if plan.outbox:
            now = utcnow()
            writes.append(
                conn.executemany(
                    "INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, "
                    "next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (key) DO NOTHING",
                    [rows.outbox_row(item, now) for item in plan.outbox],
                )
            )
        return writes

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


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements (our SQL files keep `;` only at statement ends)."""
    body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return (part.strip() for part in body.split(";") if part.strip())


def _job_queries(keys: list[JobKey]) -> Iterable[tuple[str, list[str]]]:
    """Queries loading a batch's jobs through the (provider, job_id) unique index."""
    by_provider: dict[str, list[str]] = {}
    for provider, job_id in keys:
        by_provider.setdefault(provider, []).append(job_id)
    for provider, ids in by_provider.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            yield (
                f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE provider = ? AND job_id IN ({marks})",
                [
                    provider,
                    *chunk,
                ],
            )


async def _pipeline(*calls: Awaitable[Any]) -> list[Any]:
    """Queue every call at once (they run in order on the connection's thread); the first
    failure is raised after all have finished, so none is left running."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results

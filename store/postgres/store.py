"""The PostgreSQL store: the port (store/base.py) over one database shared by replicas.

Writes to the log (intakes and attempt records) go through the same group committer as
SQLite (store/batching.py): concurrent requests share one transaction, each answered
only after its commit (store/postgres/writes.py: two round trips for a batch of intakes,
three with attempt records). Up to four transactions per replica are under way; they
lock only the jobs they touch, and take turns only to number their events, which gives
the log one order. Outbox claims lease with `FOR UPDATE SKIP
LOCKED`, so replicas never take the same item; leases, renewals and releases are by
owner. Other replicas' writes wake this one's waiters through LISTEN/NOTIFY
(store/postgres/listen.py).

A database that is down or restarting: every call fails within `connect_timeout` seconds
with `StoreUnavailable` (a 503), a write that hangs is answered so after
`WRITE_TIMEOUT`, the pool connects again by itself, and a write cut off during its
COMMIT is reported as `OutcomeUnknown`, never retried on a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import structlog

from jobtrail.core.intake import AttemptRecord, IntakeRequest, Planner, Result
from jobtrail.core.model import OutboxEntry, utcnow
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
from jobtrail.store.batching import GroupCommitter
from jobtrail.store.committed import GroupCommitted
from jobtrail.store.postgres import reads, writes
from jobtrail.store.postgres.listen import Notifications
from jobtrail.store.postgres.schema import migrate
from jobtrail.store.retention import Pruned, Removal, Sweep
from jobtrail.store.sql_reads import SQLReads

log = structlog.get_logger(__name__)
T = TypeVar("T")

# bench/replicas: 2 gave 0.35 of bare aiohttp, 4 gave 0.38-0.42, 6 gave 0.37; measured again
# once the append and the COMMIT went as one message, 2 and 8 gave 0.93 and 1.06 of 4 (one
# run each, within this machine's noise).
IN_FLIGHT = 4
POOL_SIZE = 8
CONNECT_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0  # a caller hears 503 by then, even from a database that hangs
# Errors that mean "the database cannot be reached or is going away", not "this query is wrong".
GONE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
)

_QUALIFIED = ", ".join(f"outbox.{column.strip()}" for column in reads.OUTBOX_COLUMNS.split(","))
_DUE = """
    SELECT o.id FROM outbox o
    WHERE o.kind = $1 AND o.status = 'pending' AND o.next_attempt_at <= $2
      AND (o.lease_until IS NULL OR o.lease_until <= $2)
      AND o.sink NOT IN (SELECT name FROM sinks WHERE disabled_at IS NOT NULL)
      AND NOT ($3 AND o.kind = 'notify' AND o.payload->>'status' = 'succeeded'
               AND EXISTS (SELECT 1 FROM outbox d WHERE d.provider = o.provider AND d.job_id = o.job_id
                           AND d.kind = 'download' AND d.status = 'pending'))
    ORDER BY o.next_attempt_at, o.id LIMIT $4
"""
CLAIM = f"""
WITH due AS MATERIALIZED ({_DUE} FOR UPDATE SKIP LOCKED)
UPDATE outbox SET lease_until = $5, lease_owner = $6, updated_at = $2 FROM due WHERE outbox.id = due.id
RETURNING {_QUALIFIED}
"""
RENEW = (
    "UPDATE outbox SET lease_until = $1 WHERE lease_owner = $2 AND status = 'pending' "
    "AND id = ANY($3::bigint[]) RETURNING id"
)
RELEASE = "UPDATE outbox SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = $1 RETURNING id"
LEAD = """
INSERT INTO leaders (name, owner, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE leaders.owner = excluded.owner OR leaders.expires_at < now()
RETURNING owner
"""
RESIGN = "DELETE FROM leaders WHERE name = $1 AND owner = $2"


class PostgresStore(GroupCommitted, SQLReads):
    queries = reads
    kind = "postgres"
    parallel_reads = True

    def __init__(self, dsn: str, planner: Planner, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        super().__init__(planner)
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._releasing: set[asyncio.Task[None]] = set()  # connections on their way back
        self.origin = secrets.token_hex(8)  # this store's writes, in their NOTIFY payloads
        self._notifications = Notifications(dsn, self._heard, self.origin)
        self._committer = GroupCommitter[IntakeRequest | AttemptRecord, Any, Result](
            self._prepare,
            self._finish,
            self._abandon,
            in_flight=IN_FLIGHT,
            write_timeout=WRITE_TIMEOUT,
            observe=self._observe_commit,
        )

    async def open(self, *, exclusive: bool = False) -> None:
        """Connect, migrate (under an advisory lock: replicas may start together)."""
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=self.connect_timeout,
                command_timeout=60,
                # Every statement planned for what the tables hold now: a plan cached
                # while they were small (say, a scan of `jobs`) stays until autovacuum
                # analyzes them, and meanwhile grows with every row (bench/replicas). No
                # JIT: it compiles a statement for longer than any of these run (83 ms
                # against 0.1 ms, seen with a plan whose cost was inflated).
                # Notices on: the append says where its numbers began in one (writes.py).
                server_settings={
                    "plan_cache_mode": "force_custom_plan",
                    "jit": "off",
                    "client_min_messages": "notice",
                },
                reset=_as_is,
            )
            async with self._pool.acquire(timeout=self.connect_timeout) as conn:
                await migrate(conn)
        except GONE as exc:
            await self.close()
            raise StoreUnavailable(f"cannot reach PostgreSQL: {_describe(exc)}") from exc
        except BaseException:
            await self.close()
            raise
        self._notifications.start()
        self._committer.start()

    async def close(self) -> None:
        await self._committer.close()
        await self._notifications.stop()
        if self._releasing:
            await asyncio.wait(self._releasing)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection, or `StoreUnavailable` within `connect_timeout` seconds."""
        pool = self._pool
        if pool is None:
            raise StoreClosed("the store is not open")
        try:
            if pool.get_idle_size():  # one is free: taken without waiting
                conn = await pool.acquire()
            else:
                conn = await pool.acquire(timeout=self.connect_timeout)
        except GONE as exc:
            raise StoreUnavailable(f"cannot reach PostgreSQL: {_describe(exc)}") from exc
        try:
            yield conn
        finally:
            self._release(pool, conn)

    def _release(self, pool: asyncpg.Pool, conn: Any) -> None:
        """Give `conn` back to the pool behind the caller, who has its answer already."""
        task = asyncio.get_running_loop().create_task(pool.release(conn), name="store-release")
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("store_release_failed", error=repr(task.exception()))

    async def _fetch(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """One statement on a pooled connection, in a transaction of its own; its rows."""
        async with self._connection() as conn:
            try:
                return list(await conn.fetch(query, *params))
            except GONE as exc:
                raise StoreUnavailable(f"PostgreSQL went away: {_describe(exc)}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"PostgreSQL failed: {exc}") from exc

    # -- retention -----------------------------------------------------------------------

    async def prune_deliveries(
        self, after: int, raw_before: datetime, rejected_before: datetime, page: int = 500
    ) -> Pruned:
        async def work(conn: Any) -> Pruned:
            found = await conn.fetch(reads.PRUNE_PAGE, after, page)
            decision = retention.decide(
                ((r[0], r[1], r[2]) for r in found), after, raw_before, rejected_before, page
            )
            if decision.delete:
                await conn.execute(reads.DELETE_DELIVERIES, decision.delete)
            return decision.pruned()

        return await self._retention_page(work)

    async def prune_notifications(self, after: int, before: datetime, page: int = 500) -> Sweep:
        async def work(conn: Any) -> Sweep:
            found = await conn.fetch(reads.NOTIFICATIONS_PAGE, after, page)
            sweep = retention.choose_notifications((tuple(row) for row in found), after, before, page)
            if sweep.delete:
                await conn.execute(reads.DELETE_NOTIFICATIONS, sweep.delete)
            return sweep

        return await self._retention_page(work)

    async def _retention_page(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """`work(conn)` in one transaction of a pooled connection, its failures told as the
        port tells them (the pruner backs off on `StoreUnavailable`)."""
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    return await work(conn)
            except GONE as exc:
                raise StoreUnavailable(f"PostgreSQL went away: {_describe(exc)}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"PostgreSQL retention failed: {exc}") from exc

    async def remove_jobs(self, after: int, before: datetime, page: int = 500) -> Removal:
        """The page is read, then the chosen jobs are locked as intake locks them and
        deleted only if still finished and old: a report that changed one meanwhile
        keeps it."""
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    found = await conn.fetch(reads.JOBS_PAGE, after, page)
                    choice = retention.choose_jobs((tuple(row) for row in found), after, before, page)
                    if not choice.remove:
                        return choice
                    keys = sorted({(provider, job_id) for _, provider, job_id in choice.remove})
                    await conn.execute(writes.lock_jobs(keys))
                    providers, ids = [p for p, _ in keys], [j for _, j in keys]
                    found = await conn.fetch(reads.REMOVE_JOBS, providers, ids, before, utcnow())
                    gone = {(row[0], row[1]) for row in found}
            except GONE as exc:
                raise StoreUnavailable(f"PostgreSQL went away: {_describe(exc)}") from exc
            except asyncpg.exceptions.DeadlockDetectedError as exc:  # with a batch touching these jobs
                raise StoreUnavailable(f"PostgreSQL retention met a deadlock: {exc}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"PostgreSQL retention failed: {exc}") from exc
        return choice._replace(remove=[r for r in choice.remove if (r[1], r[2]) in gone])

    # -- writes ------------------------------------------------------------------------

    async def _prepare(self, requests: Sequence[IntakeRequest | AttemptRecord]) -> Any:
        return requests  # planned when written, on its jobs as read then (writes.py)

    async def _finish(self, requests: Sequence[IntakeRequest | AttemptRecord]) -> Sequence[Result]:
        """Intakes alone: read the jobs, plan, and write, which checks under the jobs'
        locks that none changed since (two round trips); if one did, again under the
        locks from the start. Attempt records: under the locks from the start (three)."""
        locked = any(type(r) is not IntakeRequest for r in requests)
        async with self._connection() as conn:
            try:
                written, results = await self._write(conn, requests, locked=locked)
            except writes.Changed:
                self.plans_changed += 1
                written, results = await self._write(conn, requests, locked=True)
        self.events_appended += written.appended
        self._heard(appended=written.appended > 0, outbox=written.outbox)
        return results

    async def _write(
        self, conn: Any, requests: Sequence[IntakeRequest | AttemptRecord], *, locked: bool
    ) -> tuple[writes.Written, list[Result]]:
        committing = False
        try:
            try:
                written = await writes.write_batch(conn, requests, self.planner, self.origin, locked=locked)
                message = written.commit()
            except BaseException:
                await _rollback(conn)
                raise
            committing = True
            wrote = writes.Wrote()
            conn.add_log_listener(wrote)
            sent = time.perf_counter()
            try:
                await conn.execute(message)
            except asyncpg.PostgresError as exc:  # refused before it committed: nothing committed
                await _rollback(conn)
                if exc.sqlstate == writes.CHANGED:
                    raise writes.Changed(str(exc)) from exc
                raise
            finally:
                conn.remove_log_listener(wrote)
            self._round_trips(written.read_seconds, time.perf_counter() - sent)
            try:
                if not wrote.heard:
                    wrote.tell(*(await conn.fetchrow(writes.FIRST)))
                return written, written.results(wrote.delivery_ids, wrote.after)
            except (asyncpg.PostgresError, ValueError) as exc:  # committed: never to be written again
                raise OutcomeUnknown(
                    f"PostgreSQL committed the batch but what it wrote could not be read back: {exc}"
                ) from exc
        except GONE as exc:
            # Sent, and cut off before the answer, or after it, before the numbers
            # were read: committed or not, the caller cannot be told which events.
            if committing:
                raise OutcomeUnknown(
                    f"PostgreSQL went away during the commit: {_describe(exc)}; retry it"
                ) from exc
            raise StoreUnavailable(f"PostgreSQL went away: {_describe(exc)}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"PostgreSQL write failed: {exc}") from exc

    def _round_trips(self, read: float | None, write: float) -> None:
        """Tell `/metrics` how long a batch's read (if it read jobs) and its write took."""
        if self.round_trip_observer is not None:
            if read is not None:
                self.round_trip_observer("read", read)
            self.round_trip_observer("write", write)

    async def _abandon(self) -> None:
        """Nothing is planned ahead of a transaction here: nothing to forget."""

    async def claim(self, claim: Claim) -> list[OutboxEntry]:
        params = (
            claim.kind,
            claim.now,
            claim.wait_for_downloads,
            claim.limit,
            claim.lease_until,
            claim.owner,
        )
        found = await self._fetch(CLAIM, params)
        entries = [rows.outbox_from(row) for row in found]
        return sorted(entries, key=lambda e: (e.next_attempt_at, e.id))

    async def has_due(self, claim: Claim) -> bool:
        return bool(await self._fetch(_DUE, (claim.kind, claim.now, claim.wait_for_downloads, 1)))

    async def renew(self, owner: str, entry_ids: Collection[int], until: datetime) -> list[int]:
        if not entry_ids:
            return []
        return [row[0] for row in await self._fetch(RENEW, (until, owner, list(entry_ids)))]

    async def release(self, owner: str) -> int:
        released = len(await self._fetch(RELEASE, (owner,)))
        if released:
            await self._fetch("SELECT pg_notify($1, '')", (writes.OUTBOX,))
        return released

    async def record_polls(self, polls: Sequence[Polls]) -> int:
        """Under the jobs' locks, taken as intake takes them: no deadlock with a batch
        writing the same rows."""
        if not polls:
            return 0
        found = sorted(merged(polls))
        columns = [list(column) for column in zip(*found, strict=True)]
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(writes.lock_jobs([(p.provider, p.job_id) for p in found]))
                    return len(await conn.fetch(reads.RECORD_POLLS, *columns))
            except GONE as exc:
                raise StoreUnavailable(f"PostgreSQL went away: {_describe(exc)}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"PostgreSQL could not record polls: {exc}") from exc

    async def lead(self, name: str, owner: str, ttl: float) -> bool:
        return bool(await self._fetch(LEAD, (name, owner, float(ttl))))

    async def resign(self, name: str, owner: str) -> None:
        await self._fetch(RESIGN, (name, owner))

    # -- reads -------------------------------------------------------------------------

    # -- a whole log, as rows (jobtrail store copy) -------------------------------------

    async def load(self, table: str, batch: Sequence[tuple[Any, ...]]) -> None:
        """With COPY (keys and all: COPY writes identity columns as given), then the
        identity counters and the log's tail are moved past the keys loaded."""
        columns = rows.TABLES[table]
        records = [
            tuple(
                rows.dumps(v) if kind == "json" and v is not None else v
                for (_, kind), v in zip(columns, row, strict=True)
            )
            for row in batch
        ]
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table(table, records=records, columns=[n for n, _ in columns])
                    if table in reads.IDENTITIES:
                        await conn.execute(reads.restart_identity(table))
                    if table == "events":
                        await conn.execute(reads.MOVE_TAIL)
            except GONE as exc:
                raise StoreUnavailable(f"PostgreSQL went away: {_describe(exc)}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"PostgreSQL load into {table} failed: {exc}") from exc

    async def ping(self) -> None:
        if not self._committer.running:
            raise StoreClosed("the store is not open")
        await self._fetch(reads.PING)


async def _as_is(conn: Any) -> None:
    """What a pooled connection needs on its way back to the pool, past asyncpg's own
    ROLLBACK of a transaction left open: nothing. Its default reset (unlock advisory locks,
    CLOSE ALL, UNLISTEN *, RESET ALL) was a round trip after every batch, spent on state
    these connections never keep: their advisory locks end with their transactions
    (migrate's session lock is released by migrate), LISTEN has a connection of its own,
    and the only session setting is the append's own (writes.FIRST)."""


async def _rollback(conn: Any) -> None:
    """End a failed transaction, if the connection is still there to say so."""
    if not conn.is_closed() and conn.is_in_transaction():
        with contextlib.suppress(Exception):
            await conn.execute("ROLLBACK")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

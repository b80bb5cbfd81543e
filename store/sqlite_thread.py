"""The SQLite write connection, on a thread of its own: a whole transaction is one call.

aiosqlite sends each statement to its thread separately and answers each through the
event loop. A batch of intake took eight such round trips (BEGIN, the log check, one per
table, COMMIT), and each waited for a turn of a busy event loop, so a batch spent more
time queued than written. Here the event loop hands the thread one plain function that
runs `BEGIN IMMEDIATE ... COMMIT` and gets one answer back (see bench/ingest).

The functions run here are synchronous and take the connection as their first argument;
nothing else ever touches the connection, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from core.model import utcnow
from store import migrations
from store.base import SchemaTooNew, StoreError

P = ParamSpec("P")
T = TypeVar("T")


class WriteThread:
    """One sqlite3 connection and the one thread allowed to use it."""

    def __init__(self, path: Path, pragmas: Sequence[str]) -> None:
        self.path = path
        self._pragmas = tuple(pragmas)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in self._pragmas:
                conn.execute(pragma)
        except BaseException:
            conn.close()
            raise
        return conn

    async def run(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(connection, *args)` on the writer thread. A cancelled caller stops waiting;
        the call itself runs to its end (a transaction is never cut in half)."""
        if self._executor is None or self._conn is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, self._conn, *args, **kwargs))

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=False)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations this database lacks, each in its own transaction; refuse a
    database newer than this code."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    current = int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
    known = migrations.load("sqlite")
    if current > len(known):
        raise SchemaTooNew(
            f"database {path} has schema version {current}, newer than this "
            f"jobtrail knows ({len(known)}); upgrade jobtrail"
        )
    for migration in known[current:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (migration.version, migration.name, utcnow().isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements (our SQL files keep `;` only at statement ends)."""
    body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return (part.strip() for part in body.split(";") if part.strip())


def transaction(conn: sqlite3.Connection, steps: Callable[[sqlite3.Connection], T]) -> T:
    """`steps(conn)` inside `BEGIN IMMEDIATE ... COMMIT`; rolled back if anything fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = steps(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result

"""Where a bench/scale log lives, and the few things the bench does to it directly (bench
set-up, not jobtrail's own paths): a SQLite file in a temporary directory, or a
PostgreSQL database of its own, created for the run and dropped after it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from bench.replicas.run import DEFAULT_URL, admin, with_database


class SQLiteFile:
    kind = "sqlite"

    def __init__(self, directory: str) -> None:
        self.path = Path(directory) / "jobtrail.db"
        self.env: dict[str, str] = {}  # the default store: this file in the data directory

    async def execute(self, statement: str) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(statement)

    async def count(self, table: str) -> int:
        with sqlite3.connect(self.path) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - ours

    async def settle(self) -> None:
        """The build's writes on the disk (the WAL written back, the kernel's dirty pages
        flushed), so that the reads measured next do not queue behind its writeback."""
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.sync()

    async def warm(self) -> str:
        """The file read once through the page cache, as a server that has run a while
        holds it (this machine's cache has been seen holding 1-3 GB of a 5.4 GB file after
        a build): how much of it was resident before and after."""
        before = _resident(self.path)
        with self.path.open("rb") as f:
            while f.read(1 << 24):
                pass
        return f"{before} -> {_resident(self.path)} of the file in the page cache"

    async def size(self) -> int:
        """The file's size once the WAL is written back into it."""
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return self.path.stat().st_size

    async def close(self) -> None:
        """The temporary directory goes with the run."""


def _resident(path: Path) -> str:
    """How much of the file the page cache holds, by util-linux's fincore."""
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return f"{int(out.split()[0]) / 2**20:,.0f} MiB"


class PostgresDatabase:
    """A database of its own on `JOBTRAIL_BENCH_POSTGRES_URL` (else the tests' server)."""

    kind = "postgres"

    def __init__(self) -> None:
        self.server = (
            os.environ.get("JOBTRAIL_BENCH_POSTGRES_URL")
            or os.environ.get("JOBTRAIL_TEST_POSTGRES_URL")
            or DEFAULT_URL
        )
        self.name = f"jobtrail_scale_{os.getpid()}"
        self.url = with_database(self.server, self.name)
        self.env = {"JOBTRAIL_STORE_URL": self.url}

    async def create(self) -> None:
        await admin(self.server, f'CREATE DATABASE "{self.name}"')

    async def _run(self, statement: str) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()

    async def execute(self, statement: str) -> None:
        await self._run(statement)

    async def warm(self) -> str:
        """PostgreSQL keeps its own cache: left as it is."""
        return "PostgreSQL's cache as it is"

    async def settle(self) -> None:
        """As `SQLiteFile.settle`: a checkpoint, then the kernel's dirty pages flushed."""
        await self._run("CHECKPOINT")
        os.sync()

    async def count(self, table: str) -> int:
        return int(await self._run(f"SELECT count(*) FROM {table}"))  # noqa: S608 - ours

    async def size(self) -> int:
        """The database's size after a VACUUM (which marks freed space for reuse; it gives
        back only empty pages at a table's end, as PostgreSQL does in service)."""
        await self._run("VACUUM")
        return int(await self._run("SELECT pg_database_size(current_database())"))

    async def close(self) -> None:
        await admin(self.server, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

"""The SQLite schema: numbered migrations, applied at start-up before the writer starts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from jobtrail.core.model import utcnow
from jobtrail.store import migrations
from jobtrail.store.base import SchemaTooNew
from jobtrail.store.sqlite.writer import connect


def migrate(path: Path, pragmas: Sequence[str]) -> None:
    """Apply the migrations the database at `path` lacks, each in its own transaction;
    refuse a database newer than this code. Blocking: run it in a thread."""
    conn = connect(str(path), pragmas)
    try:
        _migrate(conn, path)
    finally:
        conn.close()


INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        # A new file gives pages freed by retention back (PRAGMA incremental_vacuum); it
        # can only be chosen before the first table (and, in WAL mode, takes a VACUUM:
        # instant on an empty file). An older file keeps its setting.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
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
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise type(exc)(
                f"migration {migration.version} ({migration.name}) failed and was rolled back: {exc}"
            ) from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if known[current:] and conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        # A migration that wrote a table again left the old one's pages free: give them
        # back (about a second for 120 MiB). executescript runs it to its end.
        conn.executescript("PRAGMA incremental_vacuum;")


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements (our SQL files keep `;` only at statement ends)."""
    body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return (part.strip() for part in body.split(";") if part.strip())

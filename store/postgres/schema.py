"""The PostgreSQL schema: numbered migrations (store/sql/postgres/), applied under a
session advisory lock, so replicas that start at the same moment take turns and the
second finds nothing left to do."""

from __future__ import annotations

from typing import Any

from jobtrail.store import migrations
from jobtrail.store.base import SchemaTooNew

MIGRATE_LOCK = 0x6A6F62747261694D  # "jobtraiM"


async def migrate(conn: Any) -> int:
    """Apply the migrations the database lacks, each in its own transaction; refuse a
    database migrated by a newer jobtrail. Returns how many were applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations")
        known = migrations.load("postgres")
        if current > len(known):
            raise SchemaTooNew(
                f"the database has schema version {current}, newer than this jobtrail knows "
                f"({len(known)}); upgrade jobtrail"
            )
        for migration in known[current:]:
            async with conn.transaction():
                await conn.execute(migration.sql)  # no parameters: several statements at once
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        return len(known) - int(current)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)

"""The SQLite store reads on several connections: one slow read does not hold the
others up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.store import open_store
from jobtrail.store.sqlite.store import SQLiteStore

SLOW = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000000) SELECT count(*) FROM n"
)


async def test_a_job_lookup_is_answered_while_a_slow_read_runs(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'jobtrail.db'}", EffectPlanner())
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        await store.intake(
            Delivery("webhook", "oxen", utcnow(), {}, b"{}", "j1"), [Observation("oxen", "j1", "queued")]
        )
        slow = asyncio.create_task(store._fetch(SLOW))
        await asyncio.sleep(0.05)  # the slow read has started on one connection
        lookups = [await store.get_job("oxen", "j1") for _ in range(20)]
        assert all(job is not None for job in lookups)
        assert not slow.done(), "twenty lookups were answered while the slow read still ran"
        assert [(5_000_000,)] == [tuple(row) for row in await slow]
    finally:
        await store.close()

"""The SQLite store reads on several connections: one slow read does not hold the
others up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import IntakeRequest
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


async def test_a_read_longer_than_its_turn_on_the_event_loop_finishes_on_a_thread(tmp_path: Path) -> None:
    """Reads start on the event loop's own connection; one still running after ON_LOOP is
    stopped there and run again on a reader thread, whole: the loop keeps turning while
    it runs, and its rows are all there."""
    store = open_store(f"sqlite:///{tmp_path / 'jobtrail.db'}", EffectPlanner())
    assert isinstance(store, SQLiteStore)
    await store.open()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.02)
        before = ticks
        assert [(5_000_000,)] == [tuple(row) for row in await store._fetch(SLOW)]
        assert ticks - before >= 10, "the loop stood still while the long read ran"
        before = ticks
        assert await store._fetch("SELECT 1") == [(1,)]
        assert ticks == before, "a short read is answered on the loop, without waiting for a thread"
    finally:
        running.cancel()
        await store.close()


async def test_a_read_of_many_rows_lets_the_loops_other_work_run_before_it_returns(tmp_path: Path) -> None:
    """So that a page of a listing does not hold up a job lookup while its rows are made
    into objects; a read of a few rows returns at once."""
    store = open_store(f"sqlite:///{tmp_path / 'jobtrail.db'}", EffectPlanner())
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        loop, waiting = asyncio.get_running_loop(), []
        loop.call_soon(waiting.append, "few")
        assert len(await store._fetch("SELECT 1")) == 1
        assert waiting == []
        many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) SELECT i FROM n"
        loop.call_soon(waiting.append, "many")
        assert len(await store._fetch(many)) == 100
        assert waiting == ["few", "many"]
    finally:
        await store.close()


async def test_a_long_page_is_made_into_jobs_in_slices_with_the_loops_other_work_between(
    tmp_path: Path,
) -> None:
    """A page of 500 jobs is ~1-2 ms of making rows into objects; other work (a lookup)
    waits for one slice of it (`core/turns.py`), not all of it."""
    store = open_store(f"sqlite:///{tmp_path / 'jobtrail.db'}", EffectPlanner())
    await store.open()
    try:
        requests = [
            IntakeRequest(
                Delivery("webhook", "oxen", utcnow(), {}, b"{}", f"j{n}"),
                (Observation("oxen", f"j{n}", "queued"),),
            )
            for n in range(500)
        ]
        await store.intake_many(requests)
        ticks, listing = 0, asyncio.create_task(store.list_jobs(limit=500))
        while not listing.done():
            ticks += 1
            await asyncio.sleep(0)
        assert 500 == len((await listing).jobs)
        assert ticks >= 6, f"the page was made in {ticks} turns of the loop"
    finally:
        await store.close()


async def test_many_reads_at_once_go_to_the_reader_threads_once_a_turn_of_the_loop_has_read_enough(
    tmp_path: Path,
) -> None:
    """Forty reads of ~1 ms started together (event streams starting from the log's
    beginning): a turn of the loop takes only the first few itself, the others queue on
    the reader threads; every one gets its rows."""
    store = open_store(f"sqlite:///{tmp_path / 'jobtrail.db'}", EffectPlanner())
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        loop_reads = store._on_loop
        assert loop_reads is not None
        counted = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
            "SELECT max(i) FROM n"
        )
        results = await asyncio.gather(*(store._fetch(counted) for _ in range(40)))
        assert [tuple(r) for rows in results for r in rows] == [(5000,)] * 40
        assert loop_reads.sent_to_threads >= 20
        await asyncio.sleep(0)  # a new turn
        before = loop_reads.sent_to_threads
        assert await store._fetch("SELECT 1") == [(1,)]
        assert loop_reads.sent_to_threads == before, "a new turn reads on the loop again"
    finally:
        await store.close()

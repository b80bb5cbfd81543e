"""Retention on a real SQLite file: the pruner walks old deliveries beside intake, gives
the space back, and starts where it stopped."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import timedelta
from pathlib import Path

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, Verdict, utcnow
from jobtrail.core.settings import RetentionSettings
from jobtrail.runtime.health import Component, State
from jobtrail.runtime.retention import Pruner
from jobtrail.store import open_store
from jobtrail.store.base import Store, StoreUnavailable


async def _opened(path: Path) -> Store:
    store = open_store(f"sqlite:///{path}", EffectPlanner(("slack",)))
    await store.open()
    return store


def _old(job_id: str | None, days: float, body: bytes) -> Delivery:
    return Delivery("poll", "oxen", utcnow() - timedelta(days=days), {"X-Trace": "t"}, body, job_id)


def _checkpointed_size(path: Path) -> int:
    """The main file's size once the WAL is written back into it. The open store's
    connections may be reading at that moment (its writer looks at the log's end after
    another connection wrote): TRUNCATE waits for them through the busy handler."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA busy_timeout = 10000")
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert 0 == busy
    return path.stat().st_size


async def test_the_pruner_gives_space_back_and_starts_where_the_old_rows_end(tmp_path: Path) -> None:
    path = tmp_path / "jobtrail.db"
    store = await _opened(path)
    try:
        with sqlite3.connect(path) as conn:
            assert 2 == conn.execute("PRAGMA auto_vacuum").fetchone()[0], "a new file vacuums incrementally"
        body = b"x" * 8_000
        for _ in range(300):
            await store.reject(_old(None, 40, body), "unreadable answer")
        await store.intake(_old("j1", 40, body), [Observation("oxen", "j1", "processing", progress=1)])
        await store.intake(_old("j1", 1, body), [Observation("oxen", "j1", "processing", progress=2)])
        before = _checkpointed_size(path)
        component = Component("retention", "pruner")
        pruner = Pruner(RetentionSettings(), store, component, page=64, pause=0)
        timeline = await store.job_events("oxen", "j1")
        assert 301 == await pruner.once()
        assert {"deleted": 301} == component.counts
        assert 301 == pruner.start, "the next walk starts after the old rows"
        assert 0 == await pruner.once()
        kept = await store.deliveries()
        assert [(Verdict.ACCEPTED, 8_000)] == [(d.verdict, len(d.delivery.body)) for d in kept]
        assert timeline == await store.job_events("oxen", "j1"), "the job's events stay"
        after = _checkpointed_size(path)
        assert after < before - 1_500_000, (before, after)
        with sqlite3.connect(path) as conn:
            assert [] == conn.execute("PRAGMA foreign_key_check").fetchall()
            assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        await store.close()


async def test_pruning_runs_beside_intake_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    store = await _opened(tmp_path / "jobtrail.db")
    try:
        for _ in range(1_000):
            await store.reject(_old(None, 40, b"junk"), "unreadable answer")
        pruner = Pruner(RetentionSettings(), store, Component("retention", "pruner"), page=10, pause=0)

        async def intake() -> list[int]:
            answered = []
            for n in range(300):
                result = await store.intake(
                    Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"new-{n}"),
                    [Observation("pixazo", f"new-{n}", "processing")],
                )
                answered.append(result.delivery_id)
            return answered

        deleted, answered = await asyncio.gather(pruner.once(), intake())
        assert 1_000 == deleted
        kept = {d.id for d in await store.deliveries(provider="pixazo", limit=10_000)}
        assert set(answered) <= kept, "every acknowledged delivery is still there"
        assert 300 == len((await store.list_jobs(limit=500)).jobs)
    finally:
        await store.close()


class _Unreachable:
    """A store whose retention fails as a database that is restarting, then recovers."""

    def __init__(self, store: Store) -> None:
        self._store, self.failures = store, 1

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def prune_deliveries(self, *args: object) -> object:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("cannot reach PostgreSQL: ConnectionRefusedError")
        return await self._store.prune_deliveries(*args)  # type: ignore[arg-type]


async def test_a_store_that_is_down_holds_the_pruner_back_and_it_goes_on_after(tmp_path: Path) -> None:
    store = await _opened(tmp_path / "jobtrail.db")
    try:
        await store.reject(_old(None, 40, b"junk"), "unreadable answer")
        await store.reject(_old(None, 0, b"junk"), "unreadable answer")  # the last is kept (its id)
        component = Component("retention", "pruner")
        flaky = _Unreachable(store)
        pruner = Pruner(RetentionSettings(interval=1), flaky, component, pause=0)  # type: ignore[arg-type]
        task = asyncio.create_task(pruner.run())
        try:
            async with asyncio.timeout(30):  # a hang fails, it does not block the suite
                while component.counts.get("deleted") != 1:
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert (0, State.RUNNING) == (flaky.failures, component.state), "backed off once, then pruned"
        assert 1 == len(await store.deliveries())
    finally:
        await store.close()


async def test_old_jobs_go_whole_beside_late_reports_about_them(tmp_path: Path) -> None:
    path = tmp_path / "jobtrail.db"
    store = open_store(f"sqlite:///{path}", lambda *_: [])  # no outbox work holds a job back
    await store.open()
    try:
        for n in range(200):
            await store.intake(
                Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"j{n}"),
                [Observation("pixazo", f"j{n}", "failed", error="x")],
            )
        await store.intake(  # the log's last event is not one of theirs
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "open"),
            [Observation("pixazo", "open", "processing")],
        )
        component = Component("retention", "pruner")
        settings = RetentionSettings(jobs_days=1)
        pruner = Pruner(
            settings, store, component, page=16, pause=0, clock=lambda: utcnow() + timedelta(days=2)
        )

        async def late_reports(which: list[int]) -> list[str]:
            verdicts = []
            for n in which:
                result = await store.intake(
                    Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"j{n}"),
                    [Observation("pixazo", f"j{n}", "processing")],
                )
                verdicts.append(result.verdict.value)
            return verdicts

        order = random.Random(7).sample(range(200), 200)
        _, verdicts = await asyncio.gather(pruner.once(), late_reports(order[:150]))
        verdicts += await late_reports(order[150:])  # after the walk: about jobs gone or kept back
        # A job holding the log's last event stays until the log moves on (SQLite numbers
        # the next event after the last), and the next walk takes it.
        await store.intake(
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "open"),
            [Observation("pixazo", "open", "processing", progress=50)],
        )
        await pruner.once()

        assert 200 == component.counts["jobs_removed"]
        assert verdicts[150:].count("rejected") >= 49, "reports after the walk: their jobs are gone"
        assert ["open"] == [job.id for job in (await store.list_jobs()).jobs]
        assert {"open"} == {event.job_id for event in await store.events_after(0)}
        refused = [d for d in await store.deliveries(limit=1_000) if d.verdict is Verdict.REJECTED]
        assert len(refused) == verdicts.count("rejected"), "every refused late report is kept"
        with sqlite3.connect(path) as conn:
            assert [] == conn.execute("PRAGMA foreign_key_check").fetchall(), "every event names a delivery"
            assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()
            assert 200 == conn.execute("SELECT count(*) FROM removed_jobs").fetchone()[0]
    finally:
        await store.close()


async def _done_jobs(store: Store, jobs: int) -> None:
    """`jobs` succeeded jobs, each with a download and a Slack notification, both done."""
    from tests.contract.test_outbox import claim, record

    for n in range(jobs):
        await store.intake(
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"old-{n}"),
            [Observation("pixazo", f"old-{n}", "succeeded", result_urls=(f"https://cdn.test/{n}.mp4",))],
        )
    for kind in ("download", "notify"):
        while taken := await store.claim(claim(kind, limit=100)):
            for entry in taken:
                await store.record_attempt(record(entry, "done"))


async def test_done_notifications_go_beside_intake_and_the_next_walk_starts_after_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobtrail.db"
    store = await _opened(path)
    try:
        await _done_jobs(store, 300)
        last_old = max(e.id for e in await store.outbox(limit=10_000))
        component = Component("retention", "pruner")
        settings = RetentionSettings(deliveries_days=0, rejected_days=0, notifications_days=30)
        pruner = Pruner(
            settings, store, component, page=50, pause=0, clock=lambda: utcnow() + timedelta(days=31)
        )

        async def intake() -> None:
            for n in range(200):
                await store.intake(
                    Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"new-{n}"),
                    [Observation("pixazo", f"new-{n}", "succeeded", result_urls=("https://cdn.test/x.mp4",))],
                )

        await asyncio.gather(pruner.once(), intake())
        await pruner.once()  # after intake: the walk's start has moved past the old items

        assert 300 == component.counts["notifications_deleted"], "every done notification, nothing else"
        left = await store.outbox(limit=10_000)
        assert 300 + 400 == len(left), "the old downloads (done) and all the new work stay"
        assert {"download"} == {e.item.kind for e in left if e.id <= last_old}
        first_pending = min(e.id for e in left if e.item.kind == "notify")
        assert last_old <= pruner.outbox_start < first_pending, "settled up to the first notification due"
        assert 600 == sum(1 for e in await store.events_after(0, 10_000) if e.source == "dispatch")
        with sqlite3.connect(path) as conn:
            assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        await store.close()


async def test_the_downloads_left_between_pruned_notifications_fill_their_pages_again(
    tmp_path: Path,
) -> None:
    """The notifications sat between the downloads: deleted, they leave each page about
    half full, which SQLite does not merge. The walk writes what stays in its span again,
    unchanged, and the pages that frees are given back."""
    path = tmp_path / "jobtrail.db"
    store = await _opened(path)
    try:
        await _done_jobs(store, 600)
        with sqlite3.connect(path) as conn:
            downloads = conn.execute("SELECT * FROM outbox WHERE kind = 'download' ORDER BY id").fetchall()
        settings = RetentionSettings(deliveries_days=0, rejected_days=0, notifications_days=30)
        later = utcnow() + timedelta(days=31)
        component = Component("retention", "pruner")
        await Pruner(settings, store, component, page=100, pause=0, clock=lambda: later).once()
        assert 599 == component.counts["notifications_deleted"], "all but the last item"
        with sqlite3.connect(path) as conn:
            kept = conn.execute("SELECT * FROM outbox WHERE kind = 'download' ORDER BY id").fetchall()
            pages, payload = conn.execute(
                "SELECT sum(pgsize), sum(payload) FROM dbstat WHERE name = 'outbox'"
            ).fetchone()
            assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()
            assert 0 == conn.execute("PRAGMA freelist_count").fetchone()[0]
        assert downloads == kept, "every download as it was: id, times, lease, payload"
        assert payload / pages > 0.8, f"the outbox's pages are {payload / pages:.0%} full"
        left = await store.outbox_for_job("pixazo", "old-7")
        assert [("download", "done")] == [(e.item.kind, e.status) for e in left]
    finally:
        await store.close()

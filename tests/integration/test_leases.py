"""Outbox leases between processes on one SQLite file, and the worker that holds them:
claimed by one owner, renewed while the attempt runs, never stolen, refused once lost,
released on a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import AttemptRecord
from jobtrail.core.model import Delivery, Event, Observation, OutboxEntry, utcnow
from jobtrail.dispatch.schedule import Outcome, RetrySchedule, decide
from jobtrail.dispatch.worker import Pool, Worker
from jobtrail.runtime.health import Component
from jobtrail.store import open_store
from jobtrail.store.base import Claim, LeaseLost, Store


async def failed(store: Store, job_id: str) -> None:
    await store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id), [Observation("pixazo", job_id, "failed")]
    )


def claim(owner: str, seconds: float = 60, later: float = 0) -> Claim:
    now = utcnow() + timedelta(seconds=later)
    return Claim("notify", now, now + timedelta(seconds=seconds), 10, owner)


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one file, each with its writer process: two processes' view."""
    url = f"sqlite:///{tmp_path / 'leases.db'}"
    first, second = open_store(url, EffectPlanner(("slack",))), open_store(url, EffectPlanner(("slack",)))
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_another_process_neither_frees_nor_takes_a_live_lease(two: tuple[Store, Store]) -> None:
    """Regression: a second process opening the file released every lease at start and
    claimed the item the first was still working on."""
    a, b = two
    await failed(a, "j1")
    [entry] = await a.claim(claim("a"))
    assert [] == await b.claim(claim("b"))
    event = await a.record_attempt(
        decide(entry, Outcome(True), RetrySchedule(), utcnow(), 0.1)._replace(owner="a")
    )
    assert event is not None and "notification.delivered" == event.type


async def test_a_record_after_the_lease_was_taken_over_is_refused_in_either_process(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    await failed(a, "j1")
    [entry] = await a.claim(claim("a", seconds=1))
    [same] = await b.claim(claim("b", later=2))  # a's lease ended; b takes the item
    assert entry.id == same.id
    with pytest.raises(LeaseLost):
        await a.record_attempt(
            decide(entry, Outcome(True), RetrySchedule(), utcnow(), 0.1)._replace(owner="a")
        )
    await b.record_attempt(decide(same, Outcome(True), RetrySchedule(), utcnow(), 0.1)._replace(owner="b"))
    dispatch = [e for e in await a.events_after(0) if e.source == "dispatch"]
    assert [("notification.delivered", 1)] == [(e.type, e.data["attempt"]) for e in dispatch]


class Renewals:
    """The store, with renewals counted and, once `lose` is set, answered as lost."""

    def __init__(self, store: Store) -> None:
        self._store, self.renewed, self.lose = store, 0, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def renew(self, owner: str, entry_ids: Collection[int], until: datetime) -> list[int]:
        self.renewed += 1
        held = await self._store.renew(owner, entry_ids, until)
        return [] if self.lose else held


@contextlib.asynccontextmanager
async def working(
    store: Any, lease: float, run: Callable[[OutboxEntry], Awaitable[Outcome]]
) -> AsyncIterator[None]:
    """Worker "a" on `store` (a store, or a wrapper of one), one notify slot leased for
    `lease` seconds, while the context is open."""
    worker = Worker(store, [Pool("notify", 1, lease, run)], RetrySchedule(), Component("d", "w"), owner="a")
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], Any], seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):  # a guard against a hang, not a speed check
        while not await check():
            await asyncio.sleep(0.02)


async def test_a_long_attempt_keeps_its_short_lease_and_no_one_takes_the_item(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    await failed(a, "j1")
    finish = asyncio.Event()
    started = asyncio.Event()

    async def slow(entry: OutboxEntry) -> Outcome:
        started.set()
        await finish.wait()
        return Outcome(True)

    renewals = Renewals(a)
    async with working(renewals, 0.6, slow):
        await started.wait()
        for _ in range(15):  # 1.5 s: more than twice the lease
            assert [] == await b.claim(claim("b", later=0))
            await asyncio.sleep(0.1)
        assert renewals.renewed >= 3
        finish.set()

        async def delivered() -> bool:
            return any(e.type == "notification.delivered" for e in await a.events_after(0))

        await until(delivered)


async def test_an_attempt_whose_lease_is_lost_is_stopped_and_records_nothing(
    two: tuple[Store, Store],
) -> None:
    a, _ = two
    await failed(a, "j1")
    cancelled = asyncio.Event()

    async def forever(entry: OutboxEntry) -> Outcome:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Outcome(True)

    renewals = Renewals(a)
    renewals.lose = True
    with capture_logs() as logs:
        async with working(renewals, 0.3, forever):
            await asyncio.wait_for(cancelled.wait(), 30)
    assert "dispatch_lease_lost" in [e["event"] for e in logs]
    assert [] == [e for e in await a.events_after(0) if e.source == "dispatch"]


async def test_a_worker_that_stops_cleanly_frees_its_leases_at_once(two: tuple[Store, Store]) -> None:
    a, b = two
    await failed(a, "j1")
    started = asyncio.Event()

    async def forever(entry: OutboxEntry) -> Outcome:
        started.set()
        await asyncio.sleep(3600)
        return Outcome(True)

    async with working(a, 3600, forever):
        await started.wait()
        assert [] == await b.claim(claim("b"))
    assert 1 == len(await b.claim(claim("b"))), "an hour-long lease, free as soon as its owner stopped"


class SlowRecords:
    """The store, but an attempt's record is written `before` seconds after it is asked
    for, and answered `after` seconds after it is committed."""

    def __init__(self, store: Store, *, before: float = 0.0, after: float = 0.0) -> None:
        self._store, self.before, self.after = store, before, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def record_attempt(self, record: AttemptRecord) -> Event | None:
        await asyncio.sleep(self.before)
        event = await self._store.record_attempt(record)
        await asyncio.sleep(self.after)
        return event


async def test_an_attempt_whose_record_is_on_its_way_is_not_taken_for_a_lost_lease(
    two: tuple[Store, Store],
) -> None:
    """The record releases the lease as it commits; renewals before its answer arrives
    must not call that lease lost and cancel the attempt that just succeeded."""
    a, _ = two
    await failed(a, "j1")
    component = Component("d", "w")

    async def quick(entry: OutboxEntry) -> Outcome:
        return Outcome(True)

    with capture_logs() as logs:
        worker = Worker(
            SlowRecords(a, after=0.5), [Pool("notify", 1, 0.3, quick)], RetrySchedule(), component, owner="a"
        )  # type: ignore[arg-type]
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: _counted(component))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [] == [e for e in logs if e["event"] == "dispatch_lease_lost"]
    assert 1 == component.counts["notification.delivered"]


async def _counted(component: Component) -> bool:
    return "notification.delivered" in component.counts


class RenewalsLie(Renewals):
    """Says every lease was renewed, renewing none (a renewal lost on its way)."""

    async def renew(self, owner: str, entry_ids: Collection[int], until: datetime) -> list[int]:
        self.renewed += 1
        return list(entry_ids)


async def test_a_record_from_a_worker_that_lost_its_lease_unawares_is_refused_and_logged(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    await failed(a, "j1")
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(entry: OutboxEntry) -> Outcome:
        started.set()
        await finish.wait()
        return Outcome(True)

    with capture_logs() as logs:
        async with working(RenewalsLie(a), 0.3, slow):
            await started.wait()
            await asyncio.sleep(0.4)  # the lease ended; nobody renewed it
            [taken] = await b.claim(claim("b"))
            finish.set()
            await until(lambda: _logged(logs, "dispatch_attempt_refused"))
    await b.record_attempt(decide(taken, Outcome(True), RetrySchedule(), utcnow(), 0.1)._replace(owner="b"))
    dispatch = [e for e in await a.events_after(0) if e.source == "dispatch"]
    assert 1 == len(dispatch), "only the holder's record is in the log"


async def _logged(logs: list[dict[str, Any]], event: str) -> bool:
    return any(entry["event"] == event for entry in logs)

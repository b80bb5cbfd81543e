"""The worker's lanes on a real SQLite store: items claimed ahead of the slots, a slot
free as soon as its attempt has an outcome, records bounded, and every item this worker
holds (running or ready) kept leased, or dropped once its lease is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime
from typing import Any

from structlog.testing import capture_logs

from jobtrail.core.intake import AttemptRecord
from jobtrail.core.model import Event, OutboxEntry
from jobtrail.dispatch.schedule import Outcome, RetrySchedule
from jobtrail.dispatch.worker import Pool, Worker
from jobtrail.runtime.health import Component
from jobtrail.store.base import Store
from tests.integration.test_leases import Renewals, SlowRecords, claim, failed, two, until

__all__ = ["two"]  # the fixture


class HeldRecords:
    """The store, but attempt records wait for `let_go` before they are written."""

    def __init__(self, store: Store) -> None:
        self._store, self.let_go, self.waiting = store, asyncio.Event(), 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def record_attempt(self, record: AttemptRecord) -> Event | None:
        self.waiting += 1
        await self.let_go.wait()
        return await self._store.record_attempt(record)


def worker(store: Any, size: int, lease: float, run: Any) -> Worker:
    return Worker(store, [Pool("notify", size, lease, run)], RetrySchedule(), Component("d", "w"), owner="a")


async def delivered(store: Store) -> int:
    return sum(e.type == "notification.delivered" for e in await store.events_after(0))


async def test_a_slot_takes_the_next_item_while_the_record_commits_and_records_are_bounded(
    two: tuple[Store, Store],
) -> None:
    """One slot, three items, records held back: the second item runs without waiting for
    the first one's record (it was claimed ahead), and no third is claimed while a pool's
    worth of records is on its way. Once the records go, everything is delivered."""
    a, _ = two
    for job in ("j1", "j2", "j3"):
        await failed(a, job)
    attempted: list[str] = []

    async def quick(entry: OutboxEntry) -> Outcome:
        attempted.append(entry.item.job_id)
        return Outcome(True)

    store = HeldRecords(a)
    task = asyncio.create_task(worker(store, 1, 60, quick).run())
    try:
        await until(lambda: _at_least(store, 2))
        await asyncio.sleep(0.3)  # time for a wrong third claim to show
        assert ["j1", "j2"] == attempted
        assert 0 == await delivered(a)
        store.let_go.set()
        await until(lambda: _delivered_all(a, 3))
        assert ["j1", "j2", "j3"] == attempted
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _at_least(store: HeldRecords, n: int) -> bool:
    return store.waiting >= n


async def _delivered_all(store: Store, n: int) -> bool:
    return await delivered(store) >= n


async def test_a_stopping_worker_lets_the_records_on_their_way_commit(two: tuple[Store, Store]) -> None:
    a, b = two
    await failed(a, "j1")
    done = asyncio.Event()

    async def quick(entry: OutboxEntry) -> Outcome:
        done.set()
        return Outcome(True)

    task = asyncio.create_task(worker(SlowRecords(a, before=0.5), 4, 60, quick).run())
    await done.wait()
    await asyncio.sleep(0.05)  # the record is on its way now
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert 1 == await delivered(a), "recorded, so it will not run again"
    assert [] == await b.claim(claim("b")), "and nothing is left leased or due"


async def test_an_item_waiting_for_a_slot_keeps_its_lease(two: tuple[Store, Store]) -> None:
    """The ready item behind a long attempt is claimed already: its lease is renewed
    with the running one's, so no other worker takes it while it waits."""
    a, b = two
    await failed(a, "j1")
    await failed(a, "j2")
    started, finish = asyncio.Event(), asyncio.Event()

    async def first_slow(entry: OutboxEntry) -> Outcome:
        if entry.item.job_id == "j1":
            started.set()
            await finish.wait()
        return Outcome(True)

    renewals = Renewals(a)
    task = asyncio.create_task(worker(renewals, 1, 0.6, first_slow).run())
    try:
        await started.wait()
        for _ in range(15):  # 1.5 s: more than twice the lease
            assert [] == await b.claim(claim("b"))
            await asyncio.sleep(0.1)
        assert renewals.renewed >= 3
        finish.set()
        await until(lambda: _delivered_all(a, 2))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Lost(Renewals):
    """Every renewal answers that nothing is held any more."""

    async def renew(self, owner: str, entry_ids: Collection[int], until: datetime) -> list[int]:
        self.renewed += 1
        return []


async def test_a_ready_item_whose_lease_is_lost_is_dropped_not_run(two: tuple[Store, Store]) -> None:
    a, _ = two
    await failed(a, "j1")
    await failed(a, "j2")
    attempted: list[str] = []

    async def forever(entry: OutboxEntry) -> Outcome:
        attempted.append(entry.item.job_id)
        await asyncio.sleep(3600)
        return Outcome(True)

    with capture_logs() as logs:
        task = asyncio.create_task(worker(Lost(a), 1, 0.9, forever).run())
        try:
            await until(lambda: _lost(logs, 2))
            await asyncio.sleep(0.05)  # the freed slot would take a ready item now
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert ["j1"] == attempted, "the item that waited was dropped with its lease"


async def _lost(logs: list[dict[str, Any]], n: int) -> bool:
    return sum(entry["event"] == "dispatch_lease_lost" for entry in logs) >= n

"""Replaying dead letters while the outbox worker runs, over a real SQLite file."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, OutboxEntry, utcnow
from jobtrail.dispatch import replay
from jobtrail.dispatch.schedule import Outcome, RetrySchedule, decide
from jobtrail.dispatch.worker import Pool, Worker
from jobtrail.runtime.health import Component
from jobtrail.store import open_store
from jobtrail.store.base import Claim, Store

DEAD = 600
UNCONFIGURED = Outcome(False, error="the sink 'slack' is not configured", permanent=True)


def failed(n: int) -> IntakeRequest:
    return IntakeRequest(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"j{n}"),
        (Observation("pixazo", f"j{n}", "failed"),),
    )


async def kill_all(store: Store, count: int) -> None:
    """Claim `count` notifications and record each dead (the sink is not configured)."""
    now = utcnow()
    for entry in await store.claim(Claim("notify", now, now + timedelta(seconds=60), count, "setup")):
        record = decide(entry, UNCONFIGURED, RetrySchedule(), utcnow(), 0.0)
        await store.record_attempt(record._replace(owner="setup"))
    assert count == len(await store.outbox(status="dead", limit=count + 1))


async def test_replaying_dead_items_visits_each_once_while_the_worker_kills_them_again(
    tmp_path: Path,
) -> None:
    """Regression: replay re-read "every dead item" until none was left while the worker
    (a sink that is not configured: each attempt is dead at once) put them back; 600
    items were replayed 11,385 times in 10 s and the request never ended."""
    store = open_store(f"sqlite:///{tmp_path / 'replay.db'}", EffectPlanner(("slack",)))
    await store.open()
    try:
        await store.intake_many([failed(n) for n in range(DEAD)])
        await kill_all(store, DEAD)

        async def unconfigured(entry: OutboxEntry) -> Outcome:
            return UNCONFIGURED

        worker = Worker(store, [Pool("notify", 16, 60, unconfigured)], RetrySchedule(), Component("d", "w"))
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(60):  # a guard against the endless loop, not a speed check
                count, more = await replay.replay_dead(store, sink="slack")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert (DEAD, False) == (count, more)
        events = await store.events_after(0, 100_000)
        replayed = Counter(e.data["key"] for e in events if e.type == "notification.replayed")
        assert DEAD == len(replayed)
        assert {1} == set(replayed.values())
    finally:
        await store.close()

"""One log order that readers can trust across replicas (PostgreSQL).

Sequence numbers handed out by a database sequence are not in commit order: a reader of
"everything after N" could move past an event that a slower transaction commits later,
and never see it. Here three replicas append at once while a reader pages through the log
the way `GET /api/events` does; it must see every event, once, in order.
"""

from __future__ import annotations

import asyncio
import random

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.store.postgres import PostgresStore
from tests import postgres

REPLICAS, BATCHES = 3, 60


def request(job_id: str) -> IntakeRequest:
    return IntakeRequest(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id),
        (Observation("pixazo", job_id, "processing", progress=10),),
    )


async def test_a_reader_of_everything_after_n_sees_every_event_of_concurrent_replicas() -> None:
    async with postgres.fresh_database() as url:
        stores = [PostgresStore(url, EffectPlanner()) for _ in range(REPLICAS)]
        for store in stores:
            await store.open()
        try:
            seen: list[int] = []
            writing = True

            async def write(n: int, store: PostgresStore) -> None:
                rand = random.Random(n)
                for b in range(BATCHES):
                    size = rand.randint(1, 12)
                    await store.intake_many([request(f"r{n}-{b}-{i}") for i in range(size)])
                    await asyncio.sleep(rand.random() * 0.003)

            async def read(store: PostgresStore) -> None:
                last = 0
                while writing or last < await last_seq(store):
                    events = await store.events_after(last, 50)
                    if not events:
                        await store.wait_for_append(0.05)
                        continue
                    seen.extend(e.seq for e in events)
                    last = events[-1].seq

            reader = asyncio.create_task(read(stores[0]))
            await asyncio.gather(*(write(n, store) for n, store in enumerate(stores)))
            writing = False
            async with asyncio.timeout(60):  # a guard against a hang
                await reader
            logged = [e.seq for e in await stores[0].events_after(0, 100_000)]
            assert list(range(1, len(logged) + 1)) == logged, "the log has no gaps"
            assert logged == seen, "the reader saw every event, once, in order"
            assert len({e.job_id for e in await stores[1].events_after(0, 100_000)}) == len(logged)
        finally:
            for store in stores:
                await store.close()


async def last_seq(store: PostgresStore) -> int:
    events = await store.events_after(0, 100_000)
    return events[-1].seq if events else 0


async def test_replicas_reporting_the_same_new_jobs_at_once_lose_no_update() -> None:
    """Each job is reported queued, processing and succeeded by three replicas at the same
    moment: whoever comes first creates it, the others see it; it ends succeeded, each
    report logged once."""
    async with postgres.fresh_database() as url:
        stores = [PostgresStore(url, EffectPlanner()) for _ in range(3)]
        for store in stores:
            await store.open()
        try:
            jobs = [f"same-{n}" for n in range(60)]
            rand = random.Random(7)
            stages: list[list[IntakeRequest]] = [[], [], []]
            for job in jobs:  # each stage of each job from a replica picked at random
                for store, kind in zip(
                    rand.sample(range(3), 3), ("queued", "processing", "succeeded"), strict=True
                ):
                    stages[store].append(
                        IntakeRequest(
                            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job),
                            (Observation("pixazo", job, kind),),
                        )
                    )
            await asyncio.gather(
                *(store.intake_many(batch) for store, batch in zip(stores, stages, strict=True))
            )
            for job in jobs:
                found = await stores[0].get_job("pixazo", job)
                assert found is not None and "succeeded" == found.status.value, job
                types = sorted(e.type for e in await stores[0].job_events("pixazo", job))
                assert ["job.processing", "job.queued", "job.succeeded"] == types, job
        finally:
            for store in stores:
                await store.close()

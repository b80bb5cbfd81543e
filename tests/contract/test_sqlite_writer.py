"""The SQLite writer plans from memory (store/sqlite/known.py) and checks that memory in every
transaction. These tests make the memory wrong in each way it can be and check that the
log and the jobs still come out right."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, Status, Verdict, utcnow
from jobtrail.store import open_store
from jobtrail.store.base import Store
from jobtrail.store.sqlite.known import KnownJobs


def delivery(job_id: str) -> Delivery:
    return Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id)


def processing(job_id: str, progress: int) -> Observation:
    return Observation("pixazo", job_id, "processing", progress=progress)


@pytest.fixture
async def path(tmp_path: Path) -> AsyncIterator[Path]:
    yield tmp_path / "writer.db"


async def opened(path: Path) -> Store:
    store = open_store(f"sqlite:///{path}", EffectPlanner())
    await store.open()
    return store


async def test_jobs_written_before_a_restart_are_found_not_planned_as_new(path: Path) -> None:
    first = await opened(path)
    await asyncio.gather(*(first.intake(delivery(f"j{i}"), [processing(f"j{i}", 10)]) for i in range(20)))
    created = {i: (await first.get_job("pixazo", f"j{i}")).created_at for i in range(20)}  # type: ignore[union-attr]
    await first.close()

    store = await opened(path)  # remembers nothing: every old job is first planned as new
    old = [store.intake(delivery(f"j{i}"), [processing(f"j{i}", 10 if i % 2 else 60)]) for i in range(20)]
    new = [store.intake(delivery(f"n{i}"), [processing(f"n{i}", 5)]) for i in range(20)]
    results = await asyncio.gather(*old, *new)  # one batch mixing both
    await store.close()

    store = await opened(path)
    try:
        verdicts = [r.verdict for r in results]
        assert [Verdict.ACCEPTED, Verdict.DUPLICATE] * 10 + [Verdict.ACCEPTED] * 20 == verdicts
        for i in range(20):
            job = await store.get_job("pixazo", f"j{i}")
            assert job is not None and (10 if i % 2 else 60) == job.progress
            assert created[i] == job.created_at  # the original job row, not a new one
            expected = 1 if i % 2 else 2
            assert expected == len(await store.job_events("pixazo", f"j{i}"))
        seqs = [e.seq for e in await store.events_after(0, limit=10_000)]
        assert list(range(1, len(seqs) + 1)) == seqs  # gapless: nothing half-written was kept
        assert 60 == len(await store.deliveries(limit=10_000))
    finally:
        await store.close()


async def test_a_remembered_job_behind_the_file_is_read_again_not_failed(path: Path) -> None:
    """If the memory ever holds a job older than the file (its next event is logged
    already), the event's unique fingerprint refuses the batch: the store forgets,
    reads the job and plans again, instead of failing the write (and its every retry)."""
    store = await opened(path)
    try:
        await store.intake(delivery("j1"), [processing("j1", 10)])
        stale = await store.get_job("pixazo", "j1")
        await store.intake(delivery("j1"), [Observation("pixazo", "j1", "succeeded")])
        assert stale is not None
        store._known.learn({("pixazo", "j1"): stale})  # type: ignore[attr-defined]
        again = await store.intake(delivery("j1"), [Observation("pixazo", "j1", "succeeded")])
        assert Verdict.DUPLICATE == again.verdict
        late = await store.intake(delivery("j1"), [processing("j1", 50)])
        assert late.job is not None and Status.SUCCEEDED == late.job.status
    finally:
        await store.close()


async def test_a_job_forgotten_for_lack_of_room_is_found_again(path: Path) -> None:
    store = await opened(path)
    try:
        store._known = KnownJobs(capacity=2)  # type: ignore[attr-defined]
        for i in range(5):
            await store.intake(delivery(f"j{i}"), [processing(f"j{i}", 10)])
        again = await store.intake(delivery("j0"), [processing("j0", 10)])
        assert Verdict.DUPLICATE == again.verdict
        assert 1 == len(await store.job_events("pixazo", "j0"))
    finally:
        await store.close()


def test_known_jobs_forget_the_least_recently_written_first() -> None:
    from datetime import UTC, datetime

    from jobtrail.core.model import Job

    at = datetime(2026, 1, 1, tzinfo=UTC)
    known = KnownJobs(capacity=2)
    a, b, c = (Job("p", name, at, at) for name in "abc")
    known.learn({("p", "a"): a, ("p", "b"): b})
    known.learn([(("p", "a"), a)])  # written again: now the most recent
    known.learn({("p", "c"): c})
    assert (a, None, c) == (known.get(("p", "a")), known.get(("p", "b")), known.get(("p", "c")))
    known.forget()
    assert 0 == len(known)
    with pytest.raises(ValueError):
        KnownJobs(capacity=0)

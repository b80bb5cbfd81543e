"""A job's polls (`Store.record_polls`, `Store.polls`), run against each backend: answers
added up, the latest time and digest kept, intake leaves them alone, unknown and removed
jobs skipped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.store.base import Polls, Store
from tests.conftest import Backend
from tests.contract.test_job_retention import no_effects


async def track(store: Store, job_id: str, kind: str = "processing") -> None:
    delivery = Delivery("poll", "venice", utcnow(), {}, b"{}", job_id)
    await store.intake(delivery, [Observation("venice", job_id, kind)])


async def test_answers_add_up_and_the_latest_answer_is_kept(store: Store) -> None:
    await track(store, "v1")
    assert await store.polls("venice", "v1") is None, "never polled"
    first, later = utcnow(), utcnow() + timedelta(seconds=5)
    assert 1 == await store.record_polls([Polls("venice", "v1", 3, first, "aaaa")])
    # two records of one job in one call: added up, the later answer's time and digest
    both = [Polls("venice", "v1", 1, later, "cccc"), Polls("venice", "v1", 2, first, "bbbb")]
    assert 1 == await store.record_polls(both)

    assert Polls("venice", "v1", 6, later, "cccc") == await store.polls("venice", "v1")


async def test_intake_leaves_a_jobs_polls_alone(store: Store) -> None:
    await track(store, "v1")
    at = utcnow()
    await store.record_polls([Polls("venice", "v1", 2, at, "dddd")])
    await track(store, "v1", "succeeded")  # the job's row is written again

    assert Polls("venice", "v1", 2, at, "dddd") == await store.polls("venice", "v1")
    assert "succeeded" == (await store.get_job("venice", "v1")).status.value  # type: ignore[union-attr]


async def test_unknown_and_removed_jobs_are_skipped(backend: Backend) -> None:
    store = await backend.open(no_effects)  # type: ignore[arg-type]
    await track(store, "gone", "failed")
    await track(store, "kept")  # the log's last event is another job's
    await asyncio.sleep(0.01)
    assert ["gone"] == [j for _, _, j in (await store.remove_jobs(0, utcnow())).remove]
    at = utcnow()
    records = [Polls("venice", j, 1, at, "eeee") for j in ("gone", "kept", "never-tracked")]

    assert 1 == await store.record_polls(records)
    assert await store.polls("venice", "gone") is None
    assert await store.polls("venice", "never-tracked") is None
    assert await store.get_job("venice", "never-tracked") is None, "no job is made by a count"
    assert 0 == await store.record_polls([])


async def test_many_jobs_at_once(store: Store) -> None:
    for n in range(300):
        await track(store, f"m{n}")
    at = utcnow()
    assert 300 == await store.record_polls(
        [Polls("venice", f"m{n}", n + 1, at, f"{n:04x}") for n in range(300)]
    )
    assert Polls("venice", "m299", 300, at, "012b") == await store.polls("venice", "m299")


async def test_a_jobs_detail_is_the_job_its_outbox_and_its_polls_read_as_one(store: Store) -> None:
    """`Store.job_detail` (one statement on the SQL backends) gives what the three reads
    it stands for give, for a job with outbox work and polls, one with neither, and none
    for a job not tracked."""
    urls = ("https://cdn/v1.mp4",)
    at = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    for job_id, kind in (("v1", "succeeded"), ("v2", "processing")):
        observed = Observation("venice", job_id, kind, result_urls=urls if kind == "succeeded" else ())
        await store.intake(Delivery("poll", "venice", at, {}, b"{}", job_id), [observed])
    await store.record_polls([Polls("venice", "v1", 2, at, "abcd")])

    for job_id in ("v1", "v2"):
        detail = await store.job_detail("venice", job_id)
        assert detail is not None
        assert await store.get_job("venice", job_id) == detail.job
        assert await store.outbox_for_job("venice", job_id) == detail.outbox
        assert await store.polls("venice", job_id) == detail.polls
    v1 = await store.job_detail("venice", "v1")
    assert v1 is not None and ["download", "notify"] == [e.item.kind for e in v1.outbox]
    assert Polls("venice", "v1", 2, at, "abcd") == v1.polls
    v2 = await store.job_detail("venice", "v2")
    assert v2 is not None and ([], None) == (v2.outbox, v2.polls)
    assert await store.job_detail("venice", "v3") is None
    assert await store.job_detail("pixazo", "v1") is None

"""A job's polls (`Store.record_polls`, `Store.polls`), run against each backend: answers
added up, the latest time and digest kept, intake leaves them alone, unknown and removed
jobs skipped."""

from __future__ import annotations

import asyncio
from datetime import timedelta

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

"""Whole-job retention (`Store.remove_jobs`), run against each backend: old finished jobs
go with everything of theirs, the rest of the log is untouched, and a late report about
a removed job is refused instead of starting it again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from jobtrail.core.intake import REMOVED
from jobtrail.core.model import Delivery, Observation, Verdict, utcnow
from jobtrail.store.base import Store
from tests.conftest import Backend
from tests.contract.test_outbox import claim, record


def report(job_id: str, kind: str, **kw: object) -> tuple[Delivery, list[Observation]]:
    body = f'{{"id": "{job_id}", "status": "{kind}"}}'.encode()
    delivery = Delivery("webhook", "pixazo", utcnow(), {"Content-Type": "application/json"}, body, job_id)
    return delivery, [Observation("pixazo", job_id, kind, **kw)]  # type: ignore[arg-type]


def no_effects(*_: object) -> list[object]:
    return []


async def finished_and_open(store: Store) -> dict[str, list[int]]:
    """Two old finished jobs (one with a duplicate delivery), one old open job, a cut, then
    a finished job and an open one after it. The deliveries of each job, by id."""
    ids: dict[str, list[int]] = {}
    steps = [
        ("old-done", "processing"),
        ("old-done", "succeeded"),
        ("old-done", "succeeded"),  # a redelivery: a duplicate row of the same job
        ("old-failed", "failed"),
        ("old-open", "processing"),
    ]
    for job_id, kind in steps:
        urls = ("https://cdn.example/out.mp4",) if kind == "succeeded" else ()
        result = await store.intake(*report(job_id, kind, result_urls=urls))
        ids.setdefault(job_id, []).append(result.delivery_id)
    return ids


async def test_old_finished_jobs_go_whole_and_the_rest_of_the_log_stays(backend: Backend) -> None:
    store = await backend.open(no_effects)  # type: ignore[arg-type]
    ids = await finished_and_open(store)
    await asyncio.sleep(0.01)
    cut = utcnow()
    await asyncio.sleep(0.01)
    for job_id, kind in [("new-done", "succeeded"), ("new-open", "processing")]:
        ids[job_id] = [(await store.intake(*report(job_id, kind))).delivery_id]
    kept_before = {
        job_id: await store.job_events("pixazo", job_id) for job_id in ("old-open", "new-done", "new-open")
    }
    last = await store.last_seq()

    done = await store.remove_jobs(0, cut, page=100)

    assert {"old-done", "old-failed"} == {job_id for _, _, job_id in done.remove}
    assert done.finished
    for job_id in ("old-done", "old-failed"):
        assert await store.get_job("pixazo", job_id) is None
        assert [] == await store.job_events("pixazo", job_id)
        assert [None] * len(ids[job_id]) == [await store.delivery(i) for i in ids[job_id]]
    for job_id, events in kept_before.items():
        assert await store.get_job("pixazo", job_id) is not None
        assert events == await store.job_events("pixazo", job_id), "kept jobs keep their timeline"
        assert all([await store.delivery(i) for i in ids[job_id]])
    logged = await store.events_after(0)
    assert {"old-open", "new-done", "new-open"} == {e.job_id for e in logged}
    assert last == await store.last_seq()
    listed = await store.list_jobs(limit=10)
    assert ["new-open", "new-done", "old-open"] == [job.id for job in listed.jobs]
    assert (await store.remove_jobs(0, cut, page=100)).remove == [], "nothing is removed twice"


async def test_a_late_report_about_a_removed_job_is_refused_and_starts_nothing(backend: Backend) -> None:
    store = await backend.open()  # effects planned: a second success would notify again
    await store.intake(*report("j1", "succeeded", result_urls=("https://cdn.example/a.mp4",)))
    kept_busy = await store.remove_jobs(0, utcnow() + timedelta(seconds=1))
    assert [] == kept_busy.remove, "a job whose notification is still due stays"
    for kind in ("download", "notify"):
        for entry in await store.claim(claim(kind, wait=False)):
            await store.record_attempt(record(entry, "done"))
    # The log's end (its last event and outbox item) is another job's, whose notification
    # is still due: it stays.
    await store.intake(*report("later", "failed", error="x"))
    await asyncio.sleep(0.01)
    assert ["j1"] == [job_id for _, _, job_id in (await store.remove_jobs(0, utcnow())).remove]
    outbox_before = await store.outbox(limit=100)
    last = await store.last_seq()

    late = await store.intake(*report("j1", "succeeded", result_urls=("https://cdn.example/a.mp4",)))

    assert Verdict.REJECTED == late.verdict
    assert [] == list(late.events)
    kept = await store.delivery(late.delivery_id)
    assert kept is not None
    assert (Verdict.REJECTED, REMOVED) == (kept.verdict, kept.reason), "the report itself is kept"
    assert await store.get_job("pixazo", "j1") is None
    assert [] == await store.job_events("pixazo", "j1")
    assert outbox_before == await store.outbox(limit=100), "no notification is planned again"
    fresh = await store.intake(*report("j2", "processing"))
    assert Verdict.ACCEPTED == fresh.verdict, "other jobs are taken as before"
    assert [last + 1] == [e.seq for e in fresh.events], "the log goes on from where it was"


async def test_the_walk_goes_a_page_at_a_time_and_stops_at_jobs_after_the_cut(backend: Backend) -> None:
    store = await backend.open(no_effects)  # type: ignore[arg-type]
    for n in range(5):
        await store.intake(*report(f"old-{n}", "failed" if n % 2 else "processing"))
    await asyncio.sleep(0.01)
    cut = utcnow()
    await asyncio.sleep(0.01)
    await store.intake(*report("new", "failed"))
    pages, after, removed = 0, 0, []
    while True:
        done = await store.remove_jobs(after, cut, page=2)
        pages, after = pages + 1, done.last
        removed += [job_id for _, _, job_id in done.remove]
        if done.finished:
            break
    assert ["old-1", "old-3"] == removed
    assert 3 == pages, "two full pages, then the job created after the cut ends the walk"
    assert {"old-0", "old-2", "old-4", "new"} == {job.id for job in (await store.list_jobs()).jobs}


async def test_removal_beside_reports_about_the_same_jobs_leaves_each_whole_or_gone(
    backend: Backend,
) -> None:
    store = await backend.open(no_effects)  # type: ignore[arg-type]
    jobs = [f"j{n}" for n in range(60)]
    for job_id in jobs:
        await store.intake(*report(job_id, "failed", error="x"))
    await store.intake(*report("open", "processing"))
    cut = utcnow() + timedelta(days=1)  # every finished job is old, even one a report just changed

    async def walk() -> list[str]:
        after, removed = 0, []
        while True:
            done = await store.remove_jobs(after, cut, page=7)
            removed += [job_id for _, _, job_id in done.remove]
            after = done.last
            if done.finished:
                return removed

    async def late(job_id: str) -> str:
        return (await store.intake(*report(job_id, "processing"))).verdict.value

    removed, *verdicts = await asyncio.gather(walk(), *(late(job_id) for job_id in reversed(jobs)))

    left = {job.id for job in (await store.list_jobs(limit=100)).jobs}
    assert set(jobs) == set(removed) | (left - {"open"}), "each job is either removed or kept"
    assert not set(removed) & left
    logged = {event.job_id for event in await store.events_after(0, limit=10_000)}
    assert logged == left, "no timeline without its job, no job without its timeline"
    for job_id in left - {"open"}:
        first, *_ = await store.job_events("pixazo", job_id)
        assert "job.failed" == first.type, "a kept job keeps its whole timeline"
    assert verdicts.count("rejected") == sum(
        1 for d in await store.deliveries(limit=1_000) if d.reason == REMOVED
    )


async def test_on_sqlite_a_job_holding_the_last_outbox_item_stays_until_another_comes(
    backend: Backend,
) -> None:
    """SQLite numbers a new row after the last: removing the last outbox item would hand
    its id out again (to a different notification, under the same number in logs and
    links). Other backends number from a sequence."""
    store = await backend.open()
    await store.intake(*report("j1", "failed", error="x"))
    for entry in await store.claim(claim("notify", wait=False)):
        await store.record_attempt(record(entry, "done"))
    await store.intake(*report("open", "processing"))  # the last event is another job's
    [last_item] = await store.outbox(limit=10)
    removed = [job_id for _, _, job_id in (await store.remove_jobs(0, utcnow())).remove]
    assert (["j1"] if backend.name != "sqlite" else []) == removed
    if backend.name == "sqlite":
        await store.intake(*report("j2", "failed", error="x"))
        assert ["j1"] == [job_id for _, _, job_id in (await store.remove_jobs(0, utcnow())).remove]
        assert all(e.id > last_item.id for e in await store.outbox(limit=10)), "no id handed out twice"

"""Outbox retention (`Store.prune_outbox`), run against each backend: an item done before
the cut goes, its attempts stay in the log; work still pending, dead items and the item
with the highest id stay; a report after the walk plans nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta

from jobtrail.core.model import Delivery, Observation, Verdict, utcnow
from jobtrail.store.base import Store
from tests.contract.test_outbox import claim, record, succeed


async def sweep_all(store: Store, before: datetime, page: int = 2) -> list[int]:
    """The walk as the pruner runs it, page by page from the first item: the ids deleted."""
    after, deleted = 0, []
    while True:
        done = await store.prune_outbox(after, before, page)
        deleted += done.delete
        after = done.last
        if done.finished:
            return deleted


async def outbox(store: Store) -> dict[int, tuple[str, str, str]]:
    return {e.id: (e.item.job_id, e.item.kind, e.status) for e in await store.outbox(limit=1_000)}


async def test_done_items_past_the_window_go_and_their_attempts_stay_in_the_log(store: Store) -> None:
    for n in range(4):
        await succeed(store, f"j{n}")  # each: a download and a Slack notification
    taken = {e.item.job_id: e for e in await store.claim(claim("download"))}
    await store.record_attempt(record(taken["j0"], "done"))
    await store.record_attempt(record(taken["j1"], "done"))
    await store.record_attempt(record(taken["j2"], "dead", last_error="HTTP 404"))
    # j3's download is left pending. The notifications: j0's done, the rest pending.
    [slack] = [e for e in await store.claim(claim("notify")) if e.item.job_id == "j0"]
    await store.record_attempt(record(slack, "done"))
    before = await outbox(store)
    timelines = {f"j{n}": await store.job_events("pixazo", f"j{n}") for n in range(4)}

    assert [] == await sweep_all(store, utcnow() - timedelta(days=1)), "inside the window: nothing"
    deleted = await sweep_all(store, utcnow() + timedelta(days=1))

    gone = {(job, kind) for job, kind, status in before.values() if status == "done"}
    assert {("j0", "download"), ("j1", "download"), ("j0", "notify")} == gone
    assert sorted(i for i, (job, kind, _) in before.items() if (job, kind) in gone) == sorted(deleted)
    left = await outbox(store)
    assert {i: v for i, v in before.items() if i not in deleted} == left, "pending and dead items stay"
    for job_id, timeline in timelines.items():
        assert timeline == await store.job_events("pixazo", job_id), "every attempt stays in the log"
    assert [] == await sweep_all(store, utcnow() + timedelta(days=1)), "done once"


async def test_a_report_after_the_walk_plans_no_work_again(store: Store) -> None:
    await succeed(store, "j0")
    for kind in ("download", "notify"):
        for entry in await store.claim(claim(kind)):
            await store.record_attempt(record(entry, "done"))
    await succeed(store, "j1")  # the last items: their ids stay taken
    assert 2 == len(await sweep_all(store, utcnow() + timedelta(days=1)))
    events = await store.last_seq()

    again = await store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "j0"),
        [Observation("pixazo", "j0", "succeeded", result_urls=("https://cdn.test/a.mp4",))],
    )

    assert Verdict.DUPLICATE == again.verdict
    assert [] == await store.outbox_for_job("pixazo", "j0"), "no download, no notification again"
    assert events == await store.last_seq()


async def test_the_item_with_the_highest_id_stays_until_another_comes(store: Store) -> None:
    await succeed(store, "j0")
    for kind in ("download", "notify"):
        for entry in await store.claim(claim(kind)):
            await store.record_attempt(record(entry, "done"))
    first, last = sorted(await outbox(store))
    assert [first] == await sweep_all(store, utcnow() + timedelta(days=1)), "its id would be handed out again"
    await succeed(store, "j1")
    assert [last] == await sweep_all(store, utcnow() + timedelta(days=1))
    assert all(i > last for i in await outbox(store)), "new items take new ids"

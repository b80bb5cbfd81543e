"""Notification retention (`Store.prune_notifications`), run against each backend: a
notification done before the cut goes, its attempts stay in the log; downloads (the
job's record of its file), pending and dead notifications and the item with the highest
id stay; a report after the walk plans nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta

from jobtrail.core.model import Delivery, Observation, Verdict, utcnow
from jobtrail.store.base import Store
from tests.contract.test_outbox import claim, record, succeed


async def sweep_all(store: Store, before: datetime, page: int = 2) -> list[int]:
    """The walk as the pruner runs it, page by page from the first item: the ids deleted."""
    after, deleted = 0, []
    while True:
        done = await store.prune_notifications(after, before, page)
        deleted += done.delete
        after = done.last
        if done.finished:
            return deleted


async def outbox(store: Store) -> dict[int, tuple[str, str, str]]:
    return {e.id: (e.item.job_id, e.item.kind, e.status) for e in await store.outbox(limit=1_000)}


async def test_done_notifications_past_the_window_go_and_their_attempts_stay_in_the_log(
    store: Store,
) -> None:
    for n in range(4):
        await succeed(store, f"j{n}")  # each: a download and a Slack notification
    for entry in await store.claim(claim("download")):  # downloads: done, dead, pending
        status = {"j0": "done", "j1": "done", "j2": "dead"}.get(entry.item.job_id, "pending")
        await store.record_attempt(record(entry, status))
    for entry in await store.claim(claim("notify")):  # notifications: done, done, dead, pending
        status = {"j0": "done", "j1": "done", "j2": "dead"}.get(entry.item.job_id, "pending")
        await store.record_attempt(record(entry, status))
    before = await outbox(store)
    timelines = {f"j{n}": await store.job_events("pixazo", f"j{n}") for n in range(4)}
    j0 = (await store.outbox_for_job("pixazo", "j0"))[0]

    assert [] == await sweep_all(store, utcnow() - timedelta(days=1)), "inside the window: nothing"
    deleted = await sweep_all(store, utcnow() + timedelta(days=1))

    assert {("j0", "notify", "done"), ("j1", "notify", "done")} == {before[i] for i in deleted}
    left = await outbox(store)
    assert {i: v for i, v in before.items() if i not in deleted} == left, "everything else stays"
    assert [j0] == await store.outbox_for_job("pixazo", "j0"), "the job's download, as it was"
    for job_id, timeline in timelines.items():
        assert timeline == await store.job_events("pixazo", job_id), "every attempt stays in the log"
    assert [] == await sweep_all(store, utcnow() + timedelta(days=1)), "done once"


async def test_a_report_after_the_walk_plans_no_notification_again(store: Store) -> None:
    await succeed(store, "j0")
    for kind in ("download", "notify"):
        for entry in await store.claim(claim(kind)):
            await store.record_attempt(record(entry, "done"))
    await succeed(store, "j1")  # the last items: their ids stay taken
    assert 1 == len(await sweep_all(store, utcnow() + timedelta(days=1)))
    kept = await store.outbox_for_job("pixazo", "j0")
    events = await store.last_seq()

    again = await store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "j0"),
        [Observation("pixazo", "j0", "succeeded", result_urls=("https://cdn.test/a.mp4",))],
    )

    assert Verdict.DUPLICATE == again.verdict
    assert kept == await store.outbox_for_job("pixazo", "j0"), "no notification again, the download as it was"
    assert events == await store.last_seq()


async def test_the_item_with_the_highest_id_stays_until_another_comes(store: Store) -> None:
    await succeed(store, "j0", urls=())  # a notification alone
    for entry in await store.claim(claim("notify")):
        await store.record_attempt(record(entry, "done"))
    [only] = await outbox(store)
    assert [] == await sweep_all(store, utcnow() + timedelta(days=1)), "its id would be handed out again"
    await succeed(store, "j1", urls=())
    assert [only] == await sweep_all(store, utcnow() + timedelta(days=1))
    assert all(i > only for i in await outbox(store)), "new items take new ids"

"""What every store backend promises (store/base.py), run against each backend."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Job, Observation, OutboxItem, Verdict, utcnow
from jobtrail.store import open_store
from jobtrail.store.base import BadCursor, ListedItem, SchemaTooNew, Store, StoreClosed, StoreError
from jobtrail.store.migrations import load
from jobtrail.store.sql_reads import SQLReads
from tests.conftest import Backend


def delivery(job_id: str | None = "job-1", body: bytes = b"{}") -> Delivery:
    return Delivery("webhook", "pixazo", utcnow(), {"Content-Type": "application/json"}, body, job_id)


def obs(job_id: str = "job-1", kind: str = "processing", **kw: object) -> Observation:
    return Observation("pixazo", job_id, kind, **kw)  # type: ignore[arg-type]


async def test_intake_appends_events_and_projects_the_job(store: Store) -> None:
    result = await store.intake(delivery(), [obs(progress=10)])
    assert Verdict.ACCEPTED == result.verdict
    assert ["job.processing"] == [e.type for e in result.events]
    job = await store.get_job("pixazo", "job-1")
    assert job is not None and 10 == job.progress
    assert [1] == [e.seq for e in await store.job_events("pixazo", "job-1")]


async def test_a_redelivery_appends_nothing_and_is_kept_as_duplicate(store: Store) -> None:
    await store.intake(delivery(), [obs(progress=10)])
    again = await store.intake(delivery(), [obs(progress=10)])
    assert Verdict.DUPLICATE == again.verdict
    assert () == again.events
    assert 1 == len(await store.job_events("pixazo", "job-1"))
    assert [Verdict.ACCEPTED, Verdict.DUPLICATE] == [d.verdict for d in await store.deliveries()]


async def test_rejected_deliveries_are_kept_for_audit(store: Store) -> None:
    delivery_id = await store.reject(delivery(None, b"not json"), "malformed JSON")
    [kept] = await store.deliveries()
    assert (delivery_id, Verdict.REJECTED, "malformed JSON", b"not json") == (
        kept.id,
        kept.verdict,
        kept.reason,
        kept.delivery.body,
    )
    assert [] == await store.events_after(0)


async def test_stored_bodies_are_capped_but_their_size_is_recorded(store: Store) -> None:
    big = b"x" * (200 * 1024)
    await store.intake(delivery(body=big), [obs()])
    [kept] = await store.deliveries()
    assert 200 * 1024 == kept.body_size
    assert 64 * 1024 == len(kept.delivery.body)


async def test_success_enqueues_downloads_and_notifications_once(store: Store) -> None:
    urls = ("https://cdn/a.mp4", "https://cdn/b.mp4")
    await store.intake(delivery(), [obs(kind="succeeded", result_urls=urls)])
    await store.intake(delivery(), [obs(kind="succeeded", result_urls=urls)])
    outbox = await store.outbox_for_job("pixazo", "job-1")
    assert [("download", "https://cdn/a.mp4"), ("download", "https://cdn/b.mp4"), ("notify", None)] == [
        (e.item.kind, e.item.payload.get("url")) for e in outbox
    ]
    assert {"pending"} == {e.status for e in outbox}


async def test_concurrent_intakes_get_unique_increasing_sequence_numbers(store: Store) -> None:
    results = await asyncio.gather(
        *(store.intake(delivery(f"j{i}"), [obs(f"j{i}", progress=i % 100)]) for i in range(300))
    )
    seqs = sorted(e.seq for r in results for e in r.events)
    assert list(range(1, 301)) == seqs
    assert 300 == len({r.delivery_id for r in results})
    assert seqs == [e.seq for e in await store.events_after(0, 1000)]


async def test_concurrent_redeliveries_of_one_job_append_each_fact_once(store: Store) -> None:
    facts = [obs(progress=p) for p in (10, 20, 30)] * 20
    results = await asyncio.gather(*(store.intake(delivery(), [o]) for o in facts))
    assert 3 == sum(r.verdict is Verdict.ACCEPTED for r in results)
    assert [10, 20, 30] == sorted(e.data["progress"] for e in await store.job_events("pixazo", "job-1"))


async def test_events_after_resumes_from_a_sequence_number(store: Store) -> None:
    for i in range(5):
        await store.intake(delivery(f"j{i}"), [obs(f"j{i}")])
    assert [4, 5] == [e.seq for e in await store.events_after(3)]
    assert [2, 3] == [e.seq for e in await store.events_after(1, limit=2)]


async def test_last_seq_is_the_end_of_the_log(store: Store) -> None:
    assert 0 == await store.last_seq()
    for i in range(3):
        await store.intake(delivery(f"j{i}"), [obs(f"j{i}")])
    assert 3 == await store.last_seq()
    assert [] == await store.events_after(await store.last_seq())


async def test_an_append_between_a_look_and_a_wait_is_not_missed(store: Store) -> None:
    seen = store.appends
    assert [] == await store.events_after(0)
    await store.intake(delivery("j1"), [obs("j1")])  # lands after the look, before the wait
    assert await asyncio.wait_for(store.wait_for_append(30, since=seen), 1)
    # With nothing appended since, a wait times out. PostgreSQL may wake one more: its
    # backstop reads the log's end once a second, and a change since its last read wakes
    # (before a replica skipped its own commits coming back through LISTEN, CI saw that
    # echo land inside the 50 ms). A wait that returned at once every time fails all three.
    quiet = [not await store.wait_for_append(0.05, since=store.appends) for _ in range(3)]
    assert any(quiet), "every wait was woken with nothing appended"


async def test_list_jobs_filters_and_paginates_newest_first(store: Store) -> None:
    for i in range(7):
        kind = "succeeded" if i % 2 else "processing"
        await store.intake(delivery(f"j{i}"), [obs(f"j{i}", kind=kind)])
    first = await store.list_jobs(limit=3)
    assert ["j6", "j5", "j4"] == [j.id for j in first.jobs]
    assert first.next_cursor is not None
    second = await store.list_jobs(limit=3, cursor=first.next_cursor)
    third = await store.list_jobs(limit=3, cursor=second.next_cursor)
    assert ["j3", "j2", "j1"] == [j.id for j in second.jobs]
    assert (["j0"], None) == ([j.id for j in third.jobs], third.next_cursor)
    done = await store.list_jobs(status="succeeded")
    assert ["j5", "j3", "j1"] == [j.id for j in done.jobs]
    assert [] == list((await store.list_jobs(provider="venice")).jobs)


async def test_a_listed_job_is_the_job_without_its_dedup_memory(store: Store) -> None:
    await store.intake(delivery("j1"), [obs("j1", kind="processing", progress=40)])
    await store.intake(delivery("j1"), [obs("j1", kind="succeeded")])
    whole = await store.get_job("pixazo", "j1")
    assert whole is not None and len(whole.seen) == 2
    (listed,) = (await store.list_jobs()).jobs
    assert frozenset() == listed.seen
    assert replace(whole, seen=frozenset()) == listed


async def test_list_jobs_by_part_of_the_id_creation_time_and_conflict(store: Store) -> None:
    marks = []
    for name in ("alpha-1", "beta-2", "alpha-3", "50%_x"):
        marks.append(utcnow())
        await store.intake(delivery(name), [obs(name, kind="succeeded")])
    await store.intake(delivery("beta-2"), [obs("beta-2", kind="failed")])  # sources disagree
    assert ["alpha-3", "alpha-1"] == [j.id for j in (await store.list_jobs(q="alpha")).jobs]
    assert ["50%_x"] == [j.id for j in (await store.list_jobs(q="%_")).jobs], "LIKE's wildcards are text"
    assert [] == list((await store.list_jobs(q="ALPHA")).jobs), "case-sensitive"
    created = await store.list_jobs(since=marks[1], until=marks[3])
    assert ["alpha-3", "beta-2"] == [j.id for j in created.jobs]
    assert ["beta-2"] == [j.id for j in (await store.list_jobs(conflict=True)).jobs]
    calm = await store.list_jobs(conflict=False, limit=2)
    assert ["50%_x", "alpha-3"] == [j.id for j in calm.jobs]
    rest = await store.list_jobs(conflict=False, limit=2, cursor=calm.next_cursor)
    assert (["alpha-1"], None) == ([j.id for j in rest.jobs], rest.next_cursor), "the filter holds on"


async def test_job_counts_by_provider_and_status_with_conflicts(store: Store) -> None:
    await store.intake(delivery("a"), [obs("a", kind="succeeded")])
    await store.intake(delivery("b"), [obs("b", kind="succeeded"), obs("b", kind="failed")])
    await store.intake(delivery("c"), [obs("c")])
    counts = await store.job_counts()
    assert {("pixazo", "succeeded"): 2, ("pixazo", "processing"): 1} == dict(counts.by_status)
    assert {"pixazo": 1} == dict(counts.conflicts)


async def test_events_per_minute_counts_the_log_from_a_time_on(store: Store) -> None:
    assert [] == await store.events_per_minute(utcnow())
    await store.intake(delivery("a"), [obs("a", kind="queued")])
    middle = utcnow()
    for name in ("b", "c", "d"):
        await store.intake(delivery(name), [obs(name, kind="queued"), obs(name, progress=5)])
    counted = await store.events_per_minute(middle)
    assert 6 == sum(n for _, n in counted), "the three jobs' two events each, not the first job's"
    assert all(minute.second == 0 and minute.tzinfo is not None for minute, _ in counted)
    assert 7 == sum(n for _, n in await store.events_per_minute(middle.replace(year=2000)))
    assert [] == await store.events_per_minute(utcnow())


async def test_a_job_updated_later_keeps_its_place_in_the_listing(store: Store) -> None:
    for i in range(3):
        await store.intake(delivery(f"j{i}"), [obs(f"j{i}")])
    await store.intake(delivery("j0"), [obs("j0", kind="succeeded")])
    assert ["j2", "j1", "j0"] == [j.id for j in (await store.list_jobs()).jobs]


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "nope",
        "",
        "ag",
        "!!!",
        "\udcff",
        _cursor("j" + "9" * 40),
        _cursor("j\u00b2"),
        _cursor("j-1"),
        _cursor("j 1"),
    ],
)
async def test_a_foreign_cursor_is_refused(store: Store, cursor: str) -> None:
    with pytest.raises(BadCursor):
        await store.list_jobs(cursor=cursor)


async def test_a_failing_transaction_writes_nothing(backend: Backend) -> None:
    """Delivery, events, job and outbox commit together or not at all."""

    class Exploding(EffectPlanner):
        def __call__(self, before: Job | None, after: Job, o: Observation) -> list[OutboxItem]:
            if after.status.terminal:
                raise RuntimeError("planner blew up")
            return super().__call__(before, after, o)

    store = await backend.open(Exploding())
    await store.intake(delivery(), [obs(progress=5)])
    with pytest.raises(StoreError, match="planner blew up"):
        await store.intake(delivery(), [obs(kind="succeeded", result_urls=("https://cdn/a",))])
    job = await store.get_job("pixazo", "job-1")
    assert job is not None and 5 == job.progress and not job.status.terminal
    assert 1 == len(await store.deliveries())
    assert 1 == len(await store.events_after(0))
    assert [] == await store.outbox_for_job("pixazo", "job-1")


async def test_one_bad_request_does_not_fail_the_rest_of_its_batch(backend: Backend) -> None:
    class Picky(EffectPlanner):
        def __call__(self, before: Job | None, after: Job, o: Observation) -> list[OutboxItem]:
            if after.id == "poison":
                raise RuntimeError("poison")
            return []

    store = await backend.open(Picky())
    ids = [f"j{i}" for i in range(20)] + ["poison"]
    results = await asyncio.gather(
        *(store.intake(delivery(i), [obs(i)]) for i in ids), return_exceptions=True
    )
    assert [StoreError] == [type(r) for r in results if isinstance(r, BaseException)]
    assert 20 == sum(1 for r in results if not isinstance(r, BaseException))
    assert 20 == len(await store.events_after(0))


def durable(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("the memory backend keeps nothing once closed, by design")


async def test_a_store_survives_reopening_and_records_its_schema_version(backend: Backend) -> None:
    durable(backend)
    first = await backend.open()
    await first.intake(delivery(), [obs(progress=42)])
    await first.close()
    job = await (await backend.open()).get_job("pixazo", "job-1")
    assert job is not None and 42 == job.progress
    names = [name for _, name in await schema_versions(backend)]
    assert [m.name for m in load(backend.name)] == names


async def test_a_database_newer_than_the_code_is_refused(backend: Backend) -> None:
    durable(backend)
    await (await backend.open()).close()
    await add_schema_version(backend, 99)
    with pytest.raises(SchemaTooNew, match="99"):
        await open_store(backend.url, EffectPlanner()).open()


async def schema_versions(backend: Backend) -> list[tuple[int, str]]:
    if backend.name == "sqlite":
        with sqlite3.connect(backend.url.removeprefix("sqlite:///")) as conn:
            assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]
            return list(conn.execute("SELECT version, name FROM schema_migrations ORDER BY version"))
    import asyncpg

    conn = await asyncpg.connect(backend.url)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()


async def add_schema_version(backend: Backend, version: int) -> None:
    if backend.name == "sqlite":
        with sqlite3.connect(backend.url.removeprefix("sqlite:///")) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 'then')", (version,))
        return
    import asyncpg

    conn = await asyncpg.connect(backend.url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')", version)
    finally:
        await conn.close()


async def test_sqlite_in_an_unwritable_place_is_a_clear_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open"):
        await open_store(f"sqlite:///{blocker / 'sub' / 'x.db'}", EffectPlanner()).open()


async def test_a_closed_store_refuses_writes_with_its_own_error(store: Store) -> None:
    """Regression: the SQLite store raised a bare RuntimeError here, which the poller's
    `except StoreError` never caught."""
    await store.close()
    with pytest.raises(StoreClosed):
        await store.intake(delivery(), [obs()])
    with pytest.raises(StoreClosed):
        await store.reject(delivery(), "late")
    with pytest.raises(StoreClosed):
        await store.ping()
    await store.open()  # for the fixture's own close


async def test_another_process_on_the_same_store_is_respected(backend: Backend) -> None:
    """Two processes on one store (`jobtrail outbox replay` beside `jobtrail serve` on
    SQLite; two replicas on PostgreSQL): what one remembers must not hide what the
    other committed."""
    durable(backend)
    ours, theirs = await backend.open(), await backend.open()
    await ours.intake(delivery("j1"), [obs("j1", progress=10)])
    await theirs.intake(delivery("j1"), [obs("j1", progress=50)])
    again = await ours.intake(delivery("j1"), [obs("j1", progress=50)])
    assert Verdict.DUPLICATE == again.verdict
    done = await ours.intake(delivery("j1"), [obs("j1", kind="succeeded")])
    assert Verdict.ACCEPTED == done.verdict
    job = await theirs.get_job("pixazo", "j1")
    assert job is not None and ("succeeded", 100) == (job.status.value, job.progress)
    types = [e.type for e in await theirs.job_events("pixazo", "j1")]
    assert ["job.processing", "job.processing", "job.succeeded"] == types
    seqs = [e.seq for e in await ours.events_after(0)]
    assert list(range(1, len(seqs) + 1)) == seqs


async def test_provider_words_with_any_character_are_stored_and_read_back(store: Store) -> None:
    """Whatever a provider says in its free text (a NUL becomes U+FFFD at the boundary,
    see providers/fields), every backend keeps it exactly: PostgreSQL too."""
    words = 'caf\u00e9 \u2603 \U0001f600 tab\there \ufffd and quote" and back\\slash'
    await store.intake(delivery(), [obs(kind="failed", error=words)])
    job = await store.get_job("pixazo", "job-1")
    assert job is not None and words == job.error
    [event] = await store.job_events("pixazo", "job-1")
    assert words == event.data["error"]


async def test_the_outbox_of_a_page_of_jobs_comes_in_one_read(store: Store) -> None:
    urls = ("https://cdn/a.mp4",)
    await store.intake(delivery("job-1"), [obs("job-1", kind="succeeded", result_urls=urls)])
    await store.intake(delivery("job-2"), [obs("job-2", kind="processing")])
    await store.intake(delivery("job 3'"), [obs("job 3'", kind="succeeded", result_urls=urls)])
    keys = [("pixazo", "job-1"), ("pixazo", "job-2"), ("pixazo", "job 3'"), ("venice", "job-1")]
    found = await store.outbox_for_jobs(keys)
    assert keys == list(found), "every key, in the order given"
    for key in keys:
        assert [ListedItem.of(e) for e in await store.outbox_for_job(*key)] == found[key]
    assert [] == found[("pixazo", "job-2")] == found[("venice", "job-1")]
    download, notification = found[("pixazo", "job 3'")]
    assert ("download", "pending", {"url": urls[0]}) == (
        download.kind,
        download.status,
        {k: v for k, v in (download.payload or {}).items() if k == "url"},
    )
    assert ("notify", None) == (notification.kind, notification.payload), "a listing leaves it unread"
    assert {} == await store.outbox_for_jobs([])


async def test_deliveries_page_newest_first_filtered_by_verdict_provider_and_time(store: Store) -> None:
    from datetime import timedelta

    from jobtrail.store.base import DeliveryFilter

    base = utcnow().replace(microsecond=0)  # a whole second: stored without a fraction
    for n in range(6):
        at = base + timedelta(seconds=n)
        await store.intake(Delivery("webhook", "pixazo", at, {}, b"{}", f"d{n}"), [obs(f"d{n}")])
    await store.intake(Delivery("webhook", "pixazo", base, {}, b"{}", "d0"), [obs("d0")])  # duplicate
    await store.reject(Delivery("webhook", "apiframe", base, {}, b"x", None), "bad signature")
    everything = await store.delivery_page(DeliveryFilter(), 100)
    assert [8, 7, 6, 5, 4, 3, 2, 1] == [d.id for d in everything]
    [rejected] = await store.delivery_page(DeliveryFilter(verdict="rejected"), 10)
    assert ("apiframe", "bad signature") == (rejected.delivery.provider, rejected.reason)
    assert [7] == [d.id for d in await store.delivery_page(DeliveryFilter(verdict="duplicate"), 10)]
    assert [8] == [d.id for d in await store.delivery_page(DeliveryFilter(provider="apiframe"), 10)]
    window = DeliveryFilter(since=base + timedelta(seconds=2), until=base + timedelta(seconds=4))
    assert [4, 3] == [d.id for d in await store.delivery_page(window, 10)], "since inclusive, until not"
    first = await store.delivery_page(DeliveryFilter(provider="pixazo"), 3)
    second = await store.delivery_page(DeliveryFilter(provider="pixazo", before=first[-1].id), 3)
    assert [7, 6, 5, 4, 3, 2] == [d.id for d in first + second]
    found = await store.delivery(8)
    assert found is not None and b"x" == bytes(found.delivery.body)
    assert await store.delivery(9) is None and await store.delivery(0) is None


async def test_a_pending_item_can_be_retried_now_unless_a_worker_holds_it(store: Store) -> None:
    from datetime import timedelta

    from jobtrail.dispatch import replay
    from jobtrail.dispatch.schedule import Outcome, RetrySchedule, decide
    from jobtrail.store.base import Claim

    await store.intake(delivery(), [obs(kind="succeeded", result_urls=("https://cdn/a.mp4",))])
    now = utcnow()
    [entry] = await store.claim(Claim("download", now, now + timedelta(seconds=60), 5, "w1"))
    failed = decide(entry, Outcome(False, error="HTTP 503"), RetrySchedule(), utcnow(), 0.1)
    await store.record_attempt(failed._replace(owner="w1"))
    waiting = await store.outbox_entry(entry.id)
    assert waiting is not None and "pending" == waiting.status and waiting.next_attempt_at > utcnow()

    event = await replay.retry_now(store, entry.id)
    assert event is not None and "download.retried" == event.type
    due = await store.outbox_entry(entry.id)
    assert due is not None and ("pending", 1, "HTTP 503") == (due.status, due.attempts, due.last_error)
    assert due.next_attempt_at <= utcnow(), "due now"

    now = utcnow()
    [held] = await store.claim(Claim("download", now, now + timedelta(seconds=60), 5, "w2"))
    with pytest.raises(replay.NotReplayable, match="being attempted right now"):
        await replay.retry_now(store, held.id)
    done = decide(held, Outcome(True), RetrySchedule(), utcnow(), 0.1)
    await store.record_attempt(done._replace(owner="w2"))
    with pytest.raises(replay.NotReplayable, match="is done"):
        await replay.retry_now(store, held.id)
    with pytest.raises(replay.NotReplayable, match="no outbox item"):
        await replay.retry_now(store, 999_999)


async def test_a_retry_after_the_workers_lease_ran_out_is_taken(store: Store) -> None:
    from datetime import timedelta

    from jobtrail.dispatch import replay
    from jobtrail.store.base import Claim

    await store.intake(delivery(), [obs(kind="succeeded", result_urls=("https://cdn/a.mp4",))])
    now = utcnow()
    [entry] = await store.claim(Claim("download", now, now + timedelta(milliseconds=50), 5, "gone"))
    await asyncio.sleep(0.1)  # the worker died: its lease ran out
    event = await replay.retry_now(store, entry.id)
    assert event is not None and "download.retried" == event.type


async def _prune_all(store: Store, raw_before: object, rejected_before: object, page: int = 2) -> int:
    """Retention page by page from the start, as the pruner runs it: the deliveries deleted."""
    after, deleted = 0, 0
    while True:
        done = await store.prune_deliveries(after, raw_before, rejected_before, page)  # type: ignore[arg-type]
        deleted, after = deleted + done.deleted, done.last
        if done.finished:
            return deleted


async def test_retention_deletes_deliveries_past_their_window_and_keeps_the_trail(store: Store) -> None:
    now = utcnow()
    old, middle, recent = now - timedelta(days=40), now - timedelta(days=20), now - timedelta(hours=1)

    def at(when: object, job_id: str | None, body: bytes = b'{"x": 1}') -> Delivery:
        return Delivery("webhook", "pixazo", when, {"Content-Type": "application/json"}, body, job_id)  # type: ignore[arg-type]

    first = await store.intake(at(old, "j1"), [obs("j1", progress=10)])  # accepted, old
    await store.intake(at(old, "j1"), [obs("j1", progress=10)])  # duplicate, old
    await store.reject(at(old, None, b"junk"), "malformed JSON")  # rejected, old
    await store.reject(at(middle, None, b"junk"), "malformed JSON")  # rejected, 20 days
    kept = await store.intake(at(middle, "j1"), [obs("j1", progress=20)])  # accepted, 20 days
    await store.intake(at(recent, "j1"), [obs("j1", progress=20)])  # duplicate, recent
    timeline = await store.job_events("pixazo", "j1")
    assert 4 == await _prune_all(store, now - timedelta(days=30), now - timedelta(days=10))
    left = {d.id: d for d in await store.deliveries()}
    assert [kept.delivery_id, kept.delivery_id + 1] == sorted(left), "the old three and the 20-day refusal go"
    assert b'{"x": 1}' == bytes(left[kept.delivery_id].delivery.body), "inside the window"
    assert None is await store.delivery(first.delivery_id)
    events = await store.job_events("pixazo", "j1")
    assert timeline == events, "the audit trail stays whole"
    assert [first.delivery_id, kept.delivery_id] == [e.delivery_id for e in events], "each keeps its number"
    assert 0 == await _prune_all(store, now - timedelta(days=30), now - timedelta(days=10)), "done once"
    again = await store.intake(at(now, "j1"), [obs("j1", progress=10)])
    assert Verdict.DUPLICATE == again.verdict, "deduplication does not need the raw deliveries"


async def test_retention_that_keeps_forever_changes_nothing(store: Store) -> None:
    long_ago = utcnow() - timedelta(days=3650)
    await store.intake(delivery("j1"), [obs("j1")])
    await store.reject(delivery(None, b"junk"), "malformed JSON")
    forever = datetime.min.replace(tzinfo=UTC)
    assert 0 == await _prune_all(store, forever, forever)
    assert 0 == await _prune_all(store, long_ago, long_ago)
    assert 2 == len(await store.deliveries())


async def test_the_first_key_at_a_time_is_found_by_bisection_exactly(store: Store) -> None:
    """SQL backends bound a time filter by bisecting the keys (`_first_key_at`): held
    against a plain scan of every row for times before, between and after them all."""
    if not isinstance(store, SQLReads):
        pytest.skip("the memory store filters in Python")
    assert 1 == await store._first_key_at("events", utcnow()), "an empty log: key 1"
    stamps = []
    for n in range(37):
        result = await store.intake(delivery(f"j{n}"), [obs(f"j{n}", kind="queued")])
        stamps.append(result.events[0].at)
    events = await store.events_after(0, 100)
    for at in [stamps[0] - timedelta(seconds=1), *stamps[::5], stamps[-1] + timedelta(seconds=1)]:
        expected = next((e.seq for e in events if e.at >= at), events[-1].seq + 1)
        assert expected == await store._first_key_at("events", at), at


async def test_open_jobs_are_read_once_then_only_those_that_came_since(store: Store) -> None:
    for n in range(5):
        await store.intake(delivery(f"j{n}"), [obs(f"j{n}", kind="succeeded" if n == 1 else "processing")])
    first, key = await store.open_jobs_after("pixazo", 0, limit=2)
    rest, key = await store.open_jobs_after("pixazo", key)
    assert (["j0", "j2"], ["j3", "j4"]) == ([j.id for j in first], [j.id for j in rest]), (
        "open ones, oldest first"
    )
    assert ([], key) == await store.open_jobs_after("pixazo", key), "nothing new: the same key"
    await store.intake(delivery("j5"), [obs("j5", kind="queued")])
    await store.intake(delivery("j0"), [obs("j0", kind="failed")])  # an old one ends: not new
    new, _ = await store.open_jobs_after("pixazo", key)
    assert ["j5"] == [j.id for j in new]
    assert ([], 0) == await store.open_jobs_after("venice", 0)

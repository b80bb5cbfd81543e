"""The outbox half of the store port: claims with leases, attempt records in the log,
sinks switched off and on, filters for replay. Run against every backend."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import AttemptRecord
from jobtrail.core.model import Delivery, Observation, OutboxEntry, utcnow
from jobtrail.dispatch.replay import requeue
from jobtrail.store import open_store
from jobtrail.store.base import Claim, LeaseLost, Store
from jobtrail.store.migrations import load


async def succeed(store: Store, job_id: str, urls: tuple[str, ...] = ("https://cdn.test/a.mp4",)) -> None:
    await store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id),
        [Observation("pixazo", job_id, "succeeded", result_urls=urls)],
    )


async def downloads(store: Store, job_id: str) -> list[OutboxEntry]:
    return [e for e in await store.outbox_for_job("pixazo", job_id) if e.item.kind == "download"]


OWNER = "worker-a"


def claim(
    kind: str, seconds: float = 60, wait: bool = True, limit: int = 10, later: float = 0, owner: str = OWNER
) -> Claim:
    now = utcnow() + timedelta(seconds=later)
    return Claim(kind, now, now + timedelta(seconds=seconds), limit, owner, wait)


def record(entry: OutboxEntry, status: str, **kw: object) -> AttemptRecord:
    fields: dict[str, object] = {
        "owner": OWNER,
        "entry_id": entry.id,
        "provider": entry.item.provider,
        "job_id": entry.item.job_id,
        "status": status,
        "attempts": entry.attempts + 1,
        "next_attempt_at": utcnow(),
        "last_error": None,
        "payload": None,
        "event_type": f"{entry.item.kind}.{status}",
        "event_data": {"sink": entry.item.sink, "attempt": entry.attempts + 1},
        **kw,
    }
    return AttemptRecord(**fields)  # type: ignore[arg-type]


async def test_a_claim_leases_due_work_and_a_second_claim_does_not_take_it(store: Store) -> None:
    await succeed(store, "j1")
    [download] = await store.claim(claim("download"))
    assert ("download", "pending", 0) == (download.item.kind, download.status, download.attempts)
    assert [] == await store.claim(claim("download"))
    assert [download.id] == [e.id for e in await store.claim(claim("download", later=61))]


async def test_an_attempt_is_recorded_with_a_dispatch_event_and_releases_the_lease(store: Store) -> None:
    await succeed(store, "j1")
    [download] = await store.claim(claim("download"))
    retry_at = utcnow() + timedelta(seconds=30)
    event = await store.record_attempt(
        record(
            download, "pending", next_attempt_at=retry_at, last_error="HTTP 503", event_type="download.failed"
        )
    )
    assert event is not None and ("download.failed", "dispatch") == (event.type, event.source)
    assert event.seq == max(e.seq for e in await store.events_after(0))
    [after] = await downloads(store, "j1")
    assert ("pending", 1, "HTTP 503") == (after.status, after.attempts, after.last_error)
    assert [] == await store.claim(claim("download")), "not due before next_attempt_at"
    assert [after.id] == [e.id for e in await store.claim(claim("download", later=31))]


async def test_a_payload_update_replaces_the_payload(store: Store) -> None:
    await succeed(store, "j1")
    [download] = await store.claim(claim("download"))
    done = {**download.item.payload, "path": "/data/x.mp4", "bytes": 3, "sha256": "ab"}
    await store.record_attempt(record(download, "done", payload=done))
    [after] = await downloads(store, "j1")
    assert ("done", "/data/x.mp4", 3) == (
        after.status,
        after.item.payload["path"],
        after.item.payload["bytes"],
    )


async def test_a_deferral_writes_no_event(store: Store) -> None:
    await succeed(store, "j1")
    before = len(await store.events_after(0))
    [download] = await store.claim(claim("download"))
    assert None is await store.record_attempt(record(download, "pending", attempts=0, event_type=None))
    assert before == len(await store.events_after(0))


async def test_a_success_notification_waits_for_the_jobs_downloads(store: Store) -> None:
    await succeed(store, "j1")
    assert [] == await store.claim(claim("notify"))
    assert 1 == len(await store.claim(claim("notify", wait=False, seconds=0)))
    [download] = await store.claim(claim("download"))
    await store.record_attempt(record(download, "done"))
    [notify] = await store.claim(claim("notify"))
    assert ("slack", "succeeded") == (notify.item.sink, notify.item.payload["status"])


async def test_a_disabled_sink_is_not_claimed_until_enabled(store: Store) -> None:
    for job_id in ("j2", "j3"):
        await store.intake(
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id),
            [Observation("pixazo", job_id, "failed")],
        )
    [notify, other] = await store.claim(claim("notify", seconds=0))
    await store.record_attempt(record(notify, "dead", sink_state=("slack", "HTTP 410 Gone")))
    assert {"slack": "HTTP 410 Gone"} == await store.disabled_sinks()
    assert [] == await store.claim(claim("notify", later=1)), "the other item waits for the sink"
    dead = await store.outbox_entry(notify.id)
    assert dead is not None
    await store.record_attempt(requeue(dead, "the endpoint is back", enable_sink=True))
    assert {} == await store.disabled_sinks()
    assert {notify.id, other.id} == {e.id for e in await store.claim(claim("notify", later=1))}


async def test_outbox_filters_by_status_sink_and_time(store: Store) -> None:
    await succeed(store, "j1")
    await succeed(store, "j2")
    [first, second] = await store.claim(claim("download"))
    await store.record_attempt(record(first, "dead", last_error="gave up"))
    assert [first.id] == [e.id for e in await store.outbox(status="dead")]
    assert 2 == len(await store.outbox(sink="download"))
    assert 2 == len(await store.outbox(sink="slack"))
    assert [] == await store.outbox(since=utcnow() + timedelta(seconds=5))
    assert 4 == len(await store.outbox(until=utcnow() + timedelta(seconds=5)))
    found = await store.outbox_entry(second.id)
    assert found is not None and "pending" == found.status
    assert None is await store.outbox_entry(10_000)


async def test_dispatch_and_intake_events_share_one_gapless_sequence(store: Store) -> None:
    """Attempt records go through the same writer as intake: one order, no gaps."""
    for n in range(20):
        await succeed(store, f"j{n}")
    downloads = await store.claim(claim("download", limit=20))
    await asyncio.gather(
        *(store.record_attempt(record(d, "done")) for d in downloads),
        *(
            store.intake(
                Delivery("webhook", "pixazo", utcnow(), {}, b"{}", f"k{n}"),
                [Observation("pixazo", f"k{n}", "processing")],
            )
            for n in range(20)
        ),
    )
    seqs = [e.seq for e in await store.events_after(0)]
    assert list(range(1, len(seqs) + 1)) == seqs
    assert 20 == sum(1 for e in await store.events_after(0) if e.source == "dispatch")


async def test_a_version_1_database_is_migrated_forward_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        conn.executescript(load("sqlite")[0].sql)
        conn.execute("INSERT INTO schema_migrations VALUES (1, 'init', '2026-01-01')")
    store = open_store(f"sqlite:///{path}", EffectPlanner())
    await store.open()
    await succeed(store, "j1")
    assert 1 == len(await store.claim(claim("download")))
    await store.close()
    with sqlite3.connect(path) as conn:
        assert list(range(1, len(load("sqlite")) + 1)) == [
            v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        ]


async def test_a_lease_is_not_taken_by_another_owner_until_it_ends(store: Store) -> None:
    await succeed(store, "j1")
    [mine] = await store.claim(claim("download", seconds=30))
    assert [] == await store.claim(claim("download", owner="worker-b"))
    assert not await store.has_due(claim("download", owner="worker-b"))
    [theirs] = await store.claim(claim("download", owner="worker-b", later=31))
    assert mine.id == theirs.id


async def test_an_attempt_recorded_without_the_lease_is_refused_and_writes_nothing(store: Store) -> None:
    """A worker whose lease ran out and was taken by another must not record over it:
    the other's attempt is the one in progress."""
    await succeed(store, "j1")
    [entry] = await store.claim(claim("download", seconds=1))
    await store.claim(claim("download", owner="worker-b", later=2))
    events = len(await store.events_after(0))
    with pytest.raises(LeaseLost):
        await store.record_attempt(record(entry, "done"))
    assert events == len(await store.events_after(0))
    after = await store.outbox_entry(entry.id)
    assert after is not None and ("pending", 0) == (after.status, after.attempts)
    event = await store.record_attempt(record(entry, "done", owner="worker-b"))
    assert event is not None and event.seq == events + 1


async def test_a_refused_attempt_leaves_no_gap_in_the_log(store: Store) -> None:
    """Numbers are the backend's: an event that is not written gets none, whatever was
    committed beside it."""
    await succeed(store, "j1")
    [entry] = await store.claim(claim("download"))
    refused, taken = await asyncio.gather(
        store.record_attempt(record(entry, "done", owner="worker-b")),
        store.intake(
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "j2"), [Observation("pixazo", "j2", "queued")]
        ),
        return_exceptions=True,
    )
    assert isinstance(refused, LeaseLost)
    seqs = [e.seq for e in await store.events_after(0)]
    assert list(range(1, len(seqs) + 1)) == seqs
    assert not isinstance(taken, BaseException) and seqs[-1] == taken.events[0].seq


async def test_renewing_extends_only_the_owners_own_leases(store: Store) -> None:
    for job_id in ("j1", "j2"):
        await succeed(store, job_id)
    [first] = await store.claim(claim("download", seconds=1, limit=1))
    [second] = await store.claim(claim("download", seconds=1, limit=1, owner="worker-b"))
    held = await store.renew(OWNER, [first.id, second.id], utcnow() + timedelta(seconds=60))
    assert [first.id] == held
    assert [second.id] == [e.id for e in await store.claim(claim("download", owner="worker-c", later=2))]


async def test_releasing_frees_only_the_owners_own_leases(store: Store) -> None:
    for job_id in ("j1", "j2"):
        await succeed(store, job_id)
    await store.claim(claim("download", limit=1))
    [theirs] = await store.claim(claim("download", limit=1, owner="worker-b"))
    assert 1 == await store.release(OWNER)
    assert 0 == await store.release(OWNER)
    free = await store.claim(claim("download", owner="worker-c"))
    assert theirs.id not in {e.id for e in free} and 1 == len(free)


async def test_a_replay_is_refused_while_the_item_is_pending(store: Store) -> None:
    await succeed(store, "j1")
    [entry] = await store.claim(claim("download"))
    with pytest.raises(LeaseLost):
        await store.record_attempt(requeue(entry, "by hand"))
    await store.record_attempt(record(entry, "dead"))
    dead = await store.outbox_entry(entry.id)
    assert dead is not None
    event = await store.record_attempt(requeue(dead, "by hand"))
    assert event is not None and "download.replayed" == event.type


async def test_wake_ups_fire_for_appends_and_outbox_work(store: Store) -> None:
    appended = asyncio.ensure_future(store.wait_for_append(10))
    outbox = asyncio.ensure_future(store.wait_for_outbox(10))
    await asyncio.sleep(0)
    await succeed(store, "j1")  # an event, and a download to do
    assert (True, True) == (await appended, await outbox)
    # PostgreSQL: the first commit's NOTIFY also comes back through LISTEN, a moment
    # later; let it land, or it wakes the waiter below (seen once in ~20 full runs)
    await asyncio.sleep(0.2)
    quiet = asyncio.ensure_future(store.wait_for_outbox(0.2))
    await store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "j9"), [Observation("pixazo", "j9", "queued")]
    )
    assert not await quiet, "intake that queues no work wakes no outbox waiter"


async def test_has_due_agrees_with_claim(store: Store) -> None:
    assert not await store.has_due(claim("download"))
    await succeed(store, "j1")
    assert await store.has_due(claim("download"))
    assert not await store.has_due(claim("notify")), "the success notification waits for the download"
    assert await store.has_due(claim("notify", wait=False))


async def test_outbox_pages_by_id_after_the_last_seen(store: Store) -> None:
    for n in range(5):
        await succeed(store, f"j{n}")
    everything = [e.id for e in await store.outbox(sink="download")]
    first = await store.outbox(sink="download", limit=2)
    rest = await store.outbox(sink="download", after=first[-1].id)
    assert everything == [e.id for e in first] + [e.id for e in rest]
    assert [] == await store.outbox(sink="download", after=everything[-1])

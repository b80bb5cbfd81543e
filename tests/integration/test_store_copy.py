"""`jobtrail store copy`: a whole log from SQLite to PostgreSQL and back, identical, and
still working afterwards (deduplication, numbering, order). A real file, a real database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, Verdict, utcnow
from jobtrail.dispatch.schedule import Outcome, RetrySchedule, decide
from jobtrail.receiver.cli import main
from jobtrail.store import copy as copying
from jobtrail.store import open_store
from jobtrail.store.base import Claim, Store
from jobtrail.store.migrations import latest
from jobtrail.store.rows import TABLES
from tests import postgres

PLANNER = EffectPlanner(("slack",))


def webhook(job_id: str, body: bytes = b'{"x": 1}') -> Delivery:
    return Delivery(
        "webhook",
        "pixazo",
        utcnow(),
        {"Content-Type": "application/json", "X-Note": "caf\u00e9"},
        body,
        job_id,
    )


async def a_varied_log(store: Store) -> None:
    """Every kind of row the log holds."""
    for n in range(30):
        job = f"j{n}"
        await store.intake(webhook(job), [Observation("pixazo", job, "processing", progress=n % 100)])
        if n % 3 == 0:
            await store.intake(
                webhook(job),
                [Observation("pixazo", job, "succeeded", result_urls=(f"https://cdn.test/{job}.mp4",))],
            )
        elif n % 3 == 1:
            await store.intake(webhook(job), [Observation("pixazo", job, "failed", error="boom \u2603")])
        await store.intake(
            webhook(job), [Observation("pixazo", job, "processing", progress=n % 100)]
        )  # duplicate
    await store.intake(
        webhook("j0"), [Observation("pixazo", "j0", "failed", error="disagrees")]
    )  # a conflict
    await store.reject(Delivery("webhook", "pixazo", utcnow(), {}, b"\xff not json", None), "malformed JSON")
    now = utcnow()
    claimed = await store.claim(Claim("notify", now, now + timedelta(seconds=60), 5, "w"))
    gone = Outcome(False, 410, "HTTP 410: gone", disable_sink=True)
    await store.record_attempt(decide(claimed[0], gone, RetrySchedule(), utcnow(), 0.2)._replace(owner="w"))
    await store.record_attempt(
        decide(claimed[1], Outcome(True, 200), RetrySchedule(), utcnow(), 0.1)._replace(owner="w")
    )
    dead = await store.outbox_entry(claimed[0].id)
    assert dead is not None and "dead" == dead.status
    downloads = await store.claim(Claim("download", now, now + timedelta(seconds=60), 2, "w"))
    payload = {**downloads[0].item.payload, "path": "/data/x.mp4", "bytes": 3, "sha256": "ab"}
    await store.record_attempt(
        decide(downloads[0], Outcome(True, 200, payload=payload), RetrySchedule(), utcnow(), 1.0)._replace(
            owner="w"
        )
    )
    assert await store.disabled_sinks()
    await a_removed_job(store)


async def a_removed_job(store: Store) -> None:
    """A finished job after the 30 above (jid 31), its work done (sent by hand: its sink
    is disabled), removed by retention: its tombstone is a row to copy."""
    await store.intake(webhook("gone"), [Observation("pixazo", "gone", "cancelled")])
    for entry in await store.outbox_for_job("pixazo", "gone"):
        sent = decide(entry, Outcome(True, 200), RetrySchedule(), utcnow(), 0.1)
        await store.record_attempt(sent._replace(retry_pending=True))
    # The log's end (its last event and outbox item) is another job's, kept: its
    # notification is still due.
    await store.intake(webhook("later"), [Observation("pixazo", "later", "failed", error="x")])
    removed = await store.remove_jobs(30, utcnow() + timedelta(seconds=1))
    assert ["gone"] == [job_id for _, _, job_id in removed.remove]


async def everything(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {table: await store.dump(table, None, 1_000_000) for table in TABLES}


async def opened(url: str) -> Store:
    store = open_store(url, PLANNER)
    await store.open()
    return store


async def test_a_log_copied_to_postgresql_and_back_is_the_same_and_goes_on_working(tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'source.db'}"
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    async with postgres.fresh_database() as pg_url:
        source = await opened(sqlite_url)
        try:  # closed whatever happens: an open store left behind hangs the test's end
            await a_varied_log(source)
            original = await everything(source)
        finally:
            await source.close()
        assert all(original[table] for table in TABLES), "every table has rows to copy"

        progress: list[tuple[str, int, int]] = []
        for frm, to in ((sqlite_url, pg_url), (pg_url, back_url)):
            a, b = await opened(frm), await opened(to)
            copied = await copying.copy(a, b, lambda *p: progress.append(p), batch=7)
            assert [len(original[t]) for t in TABLES] == [c.rows for c in copied]
            await a.close()
            await b.close()
        assert ("deliveries", len(original["deliveries"]), len(original["deliveries"])) in progress

        for url in (pg_url, back_url):
            copy = await opened(url)
            try:
                assert original == await everything(copy), f"{url.split(':')[0]} holds the same rows"
                again = await copy.intake(webhook("j3"), [Observation("pixazo", "j3", "succeeded")])
                assert Verdict.DUPLICATE == again.verdict, "a redelivered webhook is still a duplicate"
                fresh = await copy.intake(
                    webhook("new"),
                    [Observation("pixazo", "new", "succeeded", result_urls=("https://cdn.test/n.mp4",))],
                )
                # from the last (a removed job's rows left gaps), the duplicate's delivery first
                last_seq = max(row[0] for row in original["events"])
                last_delivery = max(row[0] for row in original["deliveries"])
                assert fresh.events[0].seq == last_seq + 1, "the numbering goes on"
                assert fresh.delivery_id == last_delivery + 2
                newest = [j.id for j in (await copy.list_jobs(limit=2)).jobs]
                assert ["new", "later"] == newest, "newest first"
                outbox_ids = [row[0] for row in original["outbox"]]
                assert {
                    "slack": "disabled after HTTP 410 Gone: HTTP 410: gone"
                } == await copy.disabled_sinks()
                new_work = await copy.outbox_for_job("pixazo", "new")
                assert new_work and min(e.id for e in new_work) > max(outbox_ids), "new ids after the copied"
            finally:
                await copy.close()


async def test_a_target_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    async with postgres.fresh_database() as pg_url:
        target = await opened(pg_url)
        await target.intake(webhook("there"), [Observation("pixazo", "there", "queued")])
        source = await opened(f"sqlite:///{tmp_path / 's.db'}")
        await source.intake(webhook("here"), [Observation("pixazo", "here", "queued")])
        try:
            with pytest.raises(copying.TargetNotEmpty, match="not empty"):
                await copying.copy(source, target, lambda *p: None)
            assert ["there"] == [j.id for j in (await target.list_jobs()).jobs], "nothing was added"
        finally:
            await source.close()
            await target.close()


def test_the_command_copies_checks_and_refuses_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    monkeypatch.setenv("JOBTRAIL_DATA_DIR", str(tmp_path))
    source_url = f"sqlite:///{tmp_path / 'jobtrail.db'}"

    async def prepare() -> None:
        store = await opened(source_url)
        try:
            await a_varied_log(store)
        finally:
            await store.close()

    asyncio.run(prepare())
    target_url = f"sqlite:///{tmp_path / 'copy.db'}"
    assert 0 == main(["store", "copy", "--from", source_url, "--to", target_url])
    out = capsys.readouterr()
    assert "copied and checked" in out.out and "sha256" in out.out and "events:" in out.err
    assert 2 == main(["store", "copy", "--from", source_url, "--to", target_url])
    assert "--to: the target store is not empty" in capsys.readouterr().err
    assert 2 == main(["store", "copy", "--from", "mysql://x", "--to", target_url])
    assert "--from" in capsys.readouterr().err
    assert 1 == main(["store", "copy", "--from", "memory://", "--to", f"sqlite:///{tmp_path / 'm.db'}"])
    assert "cannot be copied" in capsys.readouterr().err
    assert 0 == main(["migrate"])
    assert f"the sqlite store is at schema version {latest('sqlite')}" in capsys.readouterr().out

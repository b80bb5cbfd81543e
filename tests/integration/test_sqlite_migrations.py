"""SQLite migrations that rewrite a table keep every row: on a file written at version 6,
migration 7 moves the event log into `event_log`, each event naming its job by row id,
and migration 8 keeps its times as integers (microseconds, UTC) and drops the jobs'
`seen`, read from the log's fingerprints."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, Verdict, utcnow
from jobtrail.store import migrations, open_store
from jobtrail.store.base import StoreError

AT = "2026-11-01T10:00:00.000001+00:00"
JOB = (
    "INSERT INTO jobs (provider, job_id, status, progress, result_urls, error, provider_status, "
    "terminals, params, seen, created_at, updated_at) VALUES (?, ?, ?, NULL, '[]', NULL, NULL, ?, "
    "'{}', ?, ?, ?)"
)
# An outbox item, leased (the columns after `lease_until` came in migration 3).
OUTBOX = (
    "INSERT INTO outbox (id, key, kind, provider, job_id, sink, payload, status, attempts, next_attempt_at, "
    "lease_until, lease_owner, last_error, created_at, updated_at) VALUES (7, 'notify:pixazo:a:slack', "
    "'notify', 'pixazo', 'a', 'slack', '{\"status\":\"succeeded\"}', 'pending', 2, "
    "'2026-11-01T10:05:00.000000+00:00', '2026-11-01T10:01:00.000000+00:00', 'w-1', 'HTTP 503', "
    "'2026-11-01T10:00:00.000000+00:00', '2026-11-01T10:00:30.000000+00:00')"
)
EVENT = (
    "INSERT INTO events (seq, provider, job_id, type, source, at, data, delivery_id, fingerprint) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Two jobs' events interleaved, one from a dispatch (no delivery, no fingerprint), data
# with quotes and non-ASCII text; times as isoformat writes them (a whole second without
# a fraction), with another offset, and with three digits of fraction.
TIMES = [
    AT,
    "2026-11-01T10:00:01+00:00",
    "2026-11-01T12:00:02.250000+02:00",
    "1999-12-31T23:59:59.999999+00:00",
    "2026-11-01T10:00:03.040Z",
]
EVENTS = [
    (1, "pixazo", "a", "job.tracked", "webhook", TIMES[0], "{}", 1, "tracked"),
    (2, "oxen", "b-\u00e9", "job.processing", "stream", TIMES[1], '{"progress":10}', 2, "processing:10"),
    (3, "pixazo", "a", "job.succeeded", "poll", TIMES[2], '{"note":"it\'s \\"done\\""}', 3, "succeeded"),
    (4, "pixazo", "a", "dispatch.download.succeeded", "dispatch", TIMES[3], '{"attempt":1}', None, None),
    (5, "oxen", "b-\u00e9", "job.processing", "stream", TIMES[4], '{"progress":20}', 4, "processing:20"),
]


def _version_6(path: Path, events: list[tuple[object, ...]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # as jobtrail makes a new file
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TEXT NOT NULL)"
        )
        for migration in migrations.load("sqlite")[:6]:
            conn.executescript(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)", (migration.version, migration.name, AT)
            )
        # jid 1 is the job of event 2: jids are not in the events' order. `seen` holds the
        # fingerprints of each job's events, as intake keeps it.
        seen = '["processing:10","processing:20"]'
        conn.execute(JOB, ("oxen", "b-\u00e9", "processing", "[]", seen, AT, AT))
        conn.execute(JOB, ("pixazo", "a", "succeeded", '["succeeded"]', '["succeeded","tracked"]', AT, AT))
        for n in range(1, 5):
            conn.execute(
                "INSERT INTO deliveries (id, source, provider, job_id, received_at, headers, body, "
                "body_size, verdict) VALUES (?, 'webhook', 'pixazo', 'a', ?, '{}', X'', 0, 'accepted')",
                (n, AT),
            )
        conn.executemany(EVENT, events)
        conn.execute(OUTBOX)


def _outbox(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT id, key, kind, provider, job_id, sink, payload, status, attempts, next_attempt_at, "
            "lease_until, lease_owner, last_error, created_at, updated_at FROM outbox"
        ).fetchall()


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0])


async def test_the_event_log_moves_whole_and_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "jobtrail.db"
    _version_6(path, EVENTS)
    outbox = _outbox(path)
    store = open_store(f"sqlite:///{path}", EffectPlanner())
    await store.open()
    try:
        assert migrations.latest("sqlite") == _version(path)
        with sqlite3.connect(path) as conn:
            assert 0 == conn.execute("PRAGMA freelist_count").fetchone()[0], "old pages given back"
        logged = [
            (e.seq, e.provider, e.job_id, e.type, e.source, e.delivery_id)
            for e in await store.events_after(0)
        ]
        assert [(s, p, j, t, src, d) for s, p, j, t, src, _, _, d, _ in EVENTS] == logged
        # Each time the same instant, to the microsecond.
        assert [datetime.fromisoformat(t) for t in TIMES] == [e.at for e in await store.events_after(0)]
        assert [1, 3, 4] == [e.seq for e in await store.job_events("pixazo", "a")]
        assert [{"progress": 10}, {"progress": 20}] == [
            dict(e.data) for e in await store.job_events("oxen", "b-\u00e9")
        ]
        assert {"note": 'it\'s "done"'} == dict((await store.job_events("pixazo", "a"))[1].data)
        assert 5 == await store.last_seq()
        # A job's `seen` is read from its events' fingerprints (the column is gone).
        job = await store.get_job("pixazo", "a")
        assert job is not None and frozenset({"tracked", "succeeded"}) == job.seen
        # The fingerprints came along: the same report again is a duplicate, a new one is not.
        again = await store.intake(
            Delivery("stream", "oxen", utcnow(), {}, b"{}", "b-\u00e9"),
            [Observation("oxen", "b-\u00e9", "processing", progress=20)],
        )
        assert Verdict.DUPLICATE == again.verdict
        later = await store.intake(
            Delivery("stream", "oxen", utcnow(), {}, b"{}", "b-\u00e9"),
            [Observation("oxen", "b-\u00e9", "processing", progress=30)],
        )
        assert Verdict.ACCEPTED == later.verdict and [6] == [e.seq for e in later.events]
    finally:
        await store.close()
    assert outbox == _outbox(path), "the outbox, written again, row for row"
    with sqlite3.connect(path) as conn:  # the view keeps `events` readable by hand
        rows = conn.execute("SELECT seq, provider, job_id, fingerprint FROM events ORDER BY seq").fetchall()
        assert [(s, p, j, f) for s, p, j, *_, f in EVENTS] == rows[:5]
        assert "seen" not in [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
        shown = [datetime.fromisoformat(at) for (at,) in conn.execute("SELECT at FROM events ORDER BY seq")]
        assert [datetime.fromisoformat(t) for t in TIMES] == shown[:5]
        assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()


async def test_an_event_without_its_job_stops_the_migration_and_leaves_the_file_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobtrail.db"
    _version_6(path, [*EVENTS, (6, "venice", "nobody", "job.queued", "poll", AT, "{}", None, "queued")])
    with pytest.raises(StoreError, match=r"migration 7 \(event_log\) failed and was rolled back: NOT NULL"):
        await open_store(f"sqlite:///{path}", EffectPlanner()).open()
    assert 6 == _version(path)
    with sqlite3.connect(path) as conn:
        assert 6 == conn.execute("SELECT count(*) FROM events").fetchone()[0], "still the table, every row"
        assert None is conn.execute("SELECT name FROM sqlite_master WHERE name = 'event_log'").fetchone()


async def test_an_event_time_that_is_not_a_time_stops_migration_8_and_leaves_the_log_at_version_7(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobtrail.db"
    _version_6(path, [*EVENTS, (6, "pixazo", "a", "job.queued", "poll", "yesterday", "{}", None, "queued")])
    failed = r"migration 8 \(compact_rows\) failed and was rolled back: NOT NULL"
    with pytest.raises(StoreError, match=failed):
        await open_store(f"sqlite:///{path}", EffectPlanner()).open()
    assert 7 == _version(path)
    with sqlite3.connect(path) as conn:
        assert 6 == conn.execute("SELECT count(*) FROM event_log").fetchone()[0], "every event, as text"
        assert "yesterday" == conn.execute("SELECT at FROM event_log WHERE seq = 6").fetchone()[0]
        assert "seen" in [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]

"""Every listing's query plan on SQLite (EXPLAIN QUERY PLAN on a migrated file): a
filter is served by an index in key order (no sort of the table), a filter that matches
few rows does not scan for them, a time filter reads a key range.

Plans that read the table in key order, newest or oldest first, and stop at the page's
LIMIT are allowed where the filter matches many rows (no filter, a provider, a verdict
other than `rejected`) or cannot be indexed (a part of the id): they are named below."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.store import open_store
from jobtrail.store.base import DeliveryFilter, JobFilter
from jobtrail.store.sqlite import reads, writes

AT = datetime(2026, 12, 5, tzinfo=UTC)
CASES: dict[str, tuple[tuple[str, list[Any]], str]] = {
    "jobs": (reads.jobs_page(JobFilter(), None, 51), "SCAN jobs"),  # key order
    "jobs?cursor": (reads.jobs_page(JobFilter(), 500, 51), "SEARCH jobs USING INTEGER PRIMARY KEY (rowid<?)"),
    "jobs?provider": (
        reads.jobs_page(JobFilter(provider="oxen"), None, 51),
        "USING INDEX jobs_provider (provider=?)",
    ),
    "jobs?provider&cursor": (
        reads.jobs_page(JobFilter(provider="oxen"), 500, 51),
        "USING INDEX jobs_provider (provider=? AND rowid<?)",
    ),
    "jobs?status": (
        reads.jobs_page(JobFilter(status="queued"), None, 51),
        "USING INDEX jobs_status (status=?)",
    ),
    "jobs?provider&status": (
        reads.jobs_page(JobFilter(provider="oxen", status="failed"), None, 51),
        "USING INDEX jobs_provider_status (provider=? AND status=?)",
    ),
    "jobs?conflict": (reads.jobs_page(JobFilter(conflict=True), None, 51), "USING INDEX jobs_conflict"),
    "jobs?since": (
        reads.jobs_page(JobFilter(since=AT), None, 51, (10, None)),
        "USING INTEGER PRIMARY KEY (rowid>?)",
    ),
    "jobs?since&until": (
        reads.jobs_page(JobFilter(since=AT, until=AT), None, 51, (10, 20)),
        "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
    ),
    "jobs?provider&since": (
        reads.jobs_page(JobFilter(provider="oxen", since=AT), None, 51, (10, 20)),
        "USING INDEX jobs_provider (provider=? AND rowid>? AND rowid<?)",
    ),
    "jobs?q": (reads.jobs_page(JobFilter(q="clip"), None, 51), "SCAN jobs"),  # key order: a substring
    "outbox": (reads.outbox_page(None, None, None, None, 0, 101), "USING INTEGER PRIMARY KEY (rowid>?)"),
    "outbox?status": (
        reads.outbox_page("dead", None, None, None, 0, 101),
        "USING INDEX outbox_status (status=? AND rowid>?)",
    ),
    "outbox?sink": (
        reads.outbox_page(None, "slack", None, None, 0, 101),
        "USING INDEX outbox_sink (sink=? AND rowid>?)",
    ),
    "outbox?since": (
        reads.outbox_page(None, None, AT, None, 0, 101, (5, None)),
        "USING INTEGER PRIMARY KEY (rowid>?)",
    ),
    "deliveries": (reads.delivery_page(DeliveryFilter(), 51), "SCAN deliveries"),  # key order
    "deliveries?verdict=rejected": (
        reads.delivery_page(DeliveryFilter(verdict="rejected"), 51),
        "USING INDEX deliveries_rejected",
    ),
    "deliveries?verdict=duplicate": (
        reads.delivery_page(DeliveryFilter(verdict="duplicate"), 51),
        "SCAN deliveries",  # key order
    ),
    "deliveries?provider": (reads.delivery_page(DeliveryFilter(provider="oxen"), 51), "SCAN deliveries"),
    "deliveries?since": (
        reads.delivery_page(DeliveryFilter(since=AT), 51, (5, None)),
        "USING INTEGER PRIMARY KEY (rowid>?)",
    ),
    "a page of jobs' outbox items": (
        reads.jobs_outbox([("oxen", f"j{n}") for n in range(50)]),
        "MATERIALIZE page",
    ),
    "release a worker's leases": (
        (writes.RELEASE, ["owner"]),
        "USING COVERING INDEX outbox_lease (lease_owner=?)",
    ),
    "job counts": ((reads.JOB_COUNTS, []), "USING COVERING INDEX jobs_provider_status"),
    "a job's events": (
        (reads.JOB_EVENTS, ["oxen", "j1", 0, 100]),
        "SEARCH j USING COVERING INDEX sqlite_autoindex_jobs_1 (provider=? AND job_id=?)",
    ),
    "events after a number": ((reads.EVENTS_AFTER, [0, 100]), "SEARCH e USING INTEGER PRIMARY KEY (rowid>?)"),
    "due work to claim": (
        (writes.DUE, ["notify", "2026-12-05", "2026-12-05", 1, 10]),
        "SEARCH o USING INDEX outbox_claim (kind=? AND next_attempt_at<?)",
    ),
    "conflict counts": ((reads.CONFLICTS, []), "USING INDEX jobs_conflict"),
    "a job": ((reads.JOB, ["oxen", "j1"]), "SEARCH jobs USING INDEX sqlite_autoindex_jobs_1"),
    "a job with its outbox items and polls": (
        (reads.JOB_DETAIL, ["oxen", "j1"]),
        "SEARCH jobs USING INDEX sqlite_autoindex_jobs_1 (provider=? AND job_id=?)",
    ),
    "jobs to plan on": (
        next(iter(reads.jobs_by_key([("oxen", "j1"), ("oxen", "j2")]))),
        "SEARCH jobs USING INDEX sqlite_autoindex_jobs_1 (provider=? AND job_id=?)",
    ),
}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "jobtrail.db"

    async def migrate() -> None:
        store = open_store(f"sqlite:///{path}", EffectPlanner())
        await store.open()
        await store.close()

    asyncio.run(migrate())
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_listing_reads_through_an_index_or_in_key_order_and_never_sorts(database: Path, name: str) -> None:
    (query, params), expected = CASES[name]
    with sqlite3.connect(database) as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, params)]
    assert expected in plan[0], plan
    if reads.SEEN in query:  # a job's fingerprints: its entries of the log's index, alone
        assert "SEARCH event_log USING COVERING INDEX event_log_fingerprint (jid=? AND fingerprint>?)" in plan
    if name == "a job's events":  # then the job's events by its row id, in order
        assert "SEARCH e USING INDEX event_log_job (jid=? AND seq>?)" in plan, plan
    elif name == "events after a number":  # each event's job by its row id
        assert "SEARCH j USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    elif name == "due work to claim":  # a notification waits for its job's download: found by job
        assert "SEARCH d USING INDEX outbox_job (provider=? AND job_id=?)" in plan, plan
    if name == "a job with its outbox items and polls":  # its items by the index, in id order as kept
        assert "SEARCH o USING INDEX outbox_job (provider=? AND job_id=?) LEFT-JOIN" in plan, plan
    if name == "a page of jobs' outbox items":  # each job's items through the index, the few sorted
        assert "SEARCH outbox USING INDEX outbox_job (provider=? AND job_id=?)" in plan, plan
        assert not any(step.startswith("SCAN outbox") for step in plan), plan
    elif name != "conflict counts":  # a few rows grouped by provider
        assert not any("TEMP B-TREE" in step for step in plan), plan

"""One batch of intakes and attempt records as one PostgreSQL transaction.

    BEGIN
    lock the log (a transaction-level advisory lock: one appender at a time, in any replica)
    read where the log ends, and the jobs the batch touches
    plan the batch (core.intake.plan_batch), on what is committed
    record the attempts that still hold their lease (the others are refused)
    insert deliveries, events, jobs, outbox work: one statement each (unnest)
    notify the other replicas
    COMMIT

The lock is what makes the log's order one that readers can trust across replicas: it is
held until the commit, so every event numbered before this batch's is committed before
this batch's are, and "everything after N" never skips an event that commits later. It
also makes planning safe: nobody changes a job between its read and its write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.core.intake import (
    AttemptRecord,
    IntakeRequest,
    JobKey,
    Planner,
    Result,
    numbered,
    plan_batch,
    settle,
)
from jobtrail.core.model import Job, utcnow
from jobtrail.store import rows
from jobtrail.store.base import MAX_STORED_BODY
from jobtrail.store.postgres.reads import JOB_COLUMNS

# The advisory lock key of the log ("jobtrail" in ASCII, as a bigint).
LOG_LOCK = 0x6A6F62747261696C
APPENDED, OUTBOX = "jobtrail_log", "jobtrail_outbox"  # NOTIFY channels

LOCK = "SELECT pg_advisory_xact_lock($1)"
TAIL = "SELECT (SELECT COALESCE(max(id), 0) FROM deliveries), (SELECT COALESCE(max(seq), 0) FROM events)"
JOBS = (
    f"SELECT {JOB_COLUMNS} FROM jobs "
    "JOIN unnest($1::text[], $2::text[]) AS k (provider, job_id) USING (provider, job_id)"
)
ATTEMPT = """
UPDATE outbox SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4,
    payload = COALESCE($5::jsonb, payload), lease_until = NULL, lease_owner = NULL, updated_at = $6
WHERE id = $7 AND (CASE WHEN $8::text IS NULL THEN status <> 'pending' ELSE lease_owner = $8 END)
RETURNING id
"""
UPSERT_SINK = """
INSERT INTO sinks (name, disabled_at, reason, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET disabled_at = excluded.disabled_at, reason = excluded.reason,
    updated_at = excluded.updated_at
"""
INSERT_DELIVERIES = """
INSERT INTO deliveries (id, source, provider, job_id, received_at, headers, body, body_size, verdict, reason)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[],
                     $7::bytea[], $8::int[], $9::text[], $10::text[])
"""
INSERT_EVENTS = """
INSERT INTO events (seq, provider, job_id, type, source, at, data, delivery_id, fingerprint)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::jsonb[], $8::bigint[], $9::text[])
"""
UPSERT_JOBS = """
INSERT INTO jobs (provider, job_id, status, progress, result_urls, error, provider_status, terminals,
                  params, seen, created_at, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::jsonb[], $6::text[], $7::text[],
                     $8::jsonb[], $9::jsonb[], $10::jsonb[], $11::timestamptz[], $12::timestamptz[])
ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, progress = excluded.progress,
    result_urls = excluded.result_urls, error = excluded.error, provider_status = excluded.provider_status,
    terminals = excluded.terminals, params = excluded.params, seen = excluded.seen,
    updated_at = excluded.updated_at
"""
INSERT_OUTBOX = """
INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, next_attempt_at, created_at,
                    updated_at)
SELECT k, kind, p, j, s, pl, st, $8, $8, $8
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[])
    AS t (k, kind, p, j, s, pl, st)
ON CONFLICT (key) DO NOTHING
"""
NOTIFY = "SELECT pg_notify($1, $2)"


class Written(NamedTuple):
    results: list[Result]  # each request's answer
    appended: bool  # events were appended
    outbox: bool  # outbox work was added or an attempt recorded


async def write_batch(
    conn: Any, requests: Sequence[IntakeRequest | AttemptRecord], planner: Planner
) -> Written:
    """The batch's transaction on `conn` (inside a transaction already begun)."""
    await conn.execute(LOCK, LOG_LOCK)
    last_delivery, last_seq = await conn.fetchrow(TAIL)
    keys = {(o.provider, o.job_id) for r in requests if type(r) is IntakeRequest for o in r.observations}
    jobs: dict[JobKey, Job] = {}
    if keys:
        providers, ids = zip(*keys, strict=True)
        for row in await conn.fetch(JOBS, list(providers), list(ids)):
            job = rows.job_from(row)
            jobs[(job.provider, job.id)] = job
    now = utcnow()
    plan = plan_batch(requests, jobs, planner, now)
    refused = set()
    for position, record in enumerate(plan.attempts):
        if await conn.fetchval(ATTEMPT, *_attempt_params(record, now)) is None:
            refused.add(position)
        elif record.sink_state is not None:
            name, reason = record.sink_state
            await conn.execute(UPSERT_SINK, name, now if reason else None, reason, now)
    first_delivery, first_seq = last_delivery + 1, last_seq + 1
    if plan.deliveries:
        await conn.execute(INSERT_DELIVERIES, *_delivery_columns(plan, first_delivery))
    seqs = numbered(plan, first_seq, refused)
    written = [(seq, event) for seq, event in zip(seqs, plan.events, strict=True) if seq is not None]
    if written:
        await conn.execute(INSERT_EVENTS, *_event_columns(written, plan.at, first_delivery))
        await conn.execute(NOTIFY, APPENDED, str(written[-1][0]))
    if plan.jobs:
        await conn.execute(UPSERT_JOBS, *_job_columns(plan.jobs))
    if plan.outbox:
        await conn.execute(INSERT_OUTBOX, *_outbox_columns(plan), now)
    outbox = bool(plan.outbox) or len(refused) < len(plan.attempts)
    if outbox:
        await conn.execute(NOTIFY, OUTBOX, "")
    return Written(settle(plan, first_delivery, first_seq, refused), bool(written), outbox)


def _attempt_params(record: AttemptRecord, now: datetime) -> tuple[Any, ...]:
    payload = None if record.payload is None else rows.dumps(record.payload)
    return (
        record.status,
        record.attempts,
        record.next_attempt_at,
        record.last_error,
        payload,
        now,
        record.entry_id,
        record.owner,
    )


def _columns(values: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*values, strict=True)] if values else [[] for _ in range(width)]


def _delivery_columns(plan: Any, first: int) -> list[list[Any]]:
    values = []
    for n, planned in enumerate(plan.deliveries):
        d = planned.delivery
        body = bytes(d.body)
        values.append(
            (
                first + n,
                d.source,
                d.provider,
                d.job_id,
                d.received_at,
                rows.dumps(d.headers),
                body[:MAX_STORED_BODY],
                len(body),
                planned.verdict._value_,
                planned.reason,
            )
        )
    return _columns(values, 10)


def _event_columns(written: Sequence[tuple[int, Any]], at: datetime, first_delivery: int) -> list[list[Any]]:
    values = [
        (
            seq,
            e.provider,
            e.job_id,
            e.type,
            e.source,
            at,
            rows.dumps(e.data),
            None if e.delivery is None else first_delivery + e.delivery,
            e.fingerprint,
        )
        for seq, e in written
    ]
    return _columns(values, 9)


def _job_columns(jobs: Mapping[JobKey, Job]) -> list[list[Any]]:
    values = [
        (
            job.provider,
            job.id,
            job.status._value_,
            job.progress,
            json.dumps(list(job.result_urls)),
            job.error,
            job.provider_status,
            json.dumps([s.value for s in job.terminals]),
            rows.dumps(job.params) if job.params else "{}",
            json.dumps(sorted(job.seen)),
            job.created_at,
            job.updated_at,
        )
        for job in jobs.values()
    ]
    return _columns(values, 12)


def _outbox_columns(plan: Any) -> list[list[Any]]:
    values = [
        (item.key, item.kind, item.provider, item.job_id, item.sink, rows.dumps(item.payload), item.status)
        for item in plan.outbox
    ]
    return _columns(values, 7)

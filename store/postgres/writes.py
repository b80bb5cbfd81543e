"""One batch of intakes and attempt records as one PostgreSQL transaction.

    BEGIN; lock the batch's jobs   a transaction-level advisory lock per job (existing or
                                   not), in one order (no deadlock): one round trip
    read them                      committed state, after the locks (and which of them
                                   retention removed: their tombstones)
    (plan the batch: core.intake.plan_batch, on what is committed; replicas plan at once)
    (record the attempts that still hold their lease; the others are refused)
    write deliveries, jobs, outbox work      one statement, each an INSERT of unnest(...)
    append the events              one statement: move the log's tail (its row stays
                                   locked until COMMIT), insert the events numbered from
                                   it, NOTIFY; skipped when there are none (duplicates)
    COMMIT

The tail's row lock is what gives the log one order that readers can trust across
replicas: the next batch cannot take numbers until this one is committed, so every event
numbered before this batch's is visible before this batch's are, and "everything after N"
never skips an event that commits later. Only the append and the COMMIT hold it: that is
all the replicas do one at a time. The job locks make planning safe: nobody changes a job
between its read and its write, and two replicas that see a new job at once do not both
create it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.core.intake import (
    AttemptRecord,
    IntakeRequest,
    JobKey,
    Plan,
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

APPENDED, OUTBOX = "jobtrail_log", "jobtrail_outbox"  # NOTIFY channels

# Every statement is planned each time it runs (store.py sets it for the connections): a
# plan kept from when `jobs` was nearly empty looked a job up through the wrong index, or
# by scanning the table, and cost grew with every row (138 ms a batch at 54,000 jobs,
# bench/replicas). Planning costs less than that: about 0.3 ms a batch.
BEGIN = "BEGIN"
JOB_LOCKS = 0x6A6F6273  # "jobs": the first key of a job's advisory lock; the second, its hash
# The batch's jobs, and the keys among them of jobs removed by retention (tombstones):
# a job's columns, then its key and whether it is a tombstone (its columns are NULL).
JOBS = f"""
SELECT j.*, k.provider, k.job_id, r.rid IS NOT NULL
FROM unnest($1::text[], $2::text[]) AS k (provider, job_id)
LEFT JOIN LATERAL (
    SELECT {JOB_COLUMNS} FROM jobs WHERE jobs.provider = k.provider AND jobs.job_id = k.job_id LIMIT 1
) j ON true
LEFT JOIN removed_jobs r ON j.provider IS NULL AND r.provider = k.provider AND r.job_id = k.job_id
WHERE j.provider IS NOT NULL OR r.rid IS NOT NULL
"""
KEY = len(JOB_COLUMNS.split(","))  # where a row of JOBS gives the key
ATTEMPT = """
UPDATE outbox SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4,
    payload = COALESCE($5::jsonb, payload), lease_until = NULL, lease_owner = NULL, updated_at = $6
WHERE id = $7 AND (CASE
    WHEN $9::boolean THEN status = 'pending' AND (lease_until IS NULL OR lease_until <= $6)
    WHEN $8::text IS NULL THEN status <> 'pending'
    ELSE lease_owner = $8 END)
RETURNING id
"""
UPSERT_SINK = """
INSERT INTO sinks (name, disabled_at, reason, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET disabled_at = excluded.disabled_at, reason = excluded.reason,
    updated_at = excluded.updated_at
"""
# What needs no order: deliveries (ids from their identity column, returned in the order
# given), jobs, outbox work.
DELIVER = """
WITH delivered AS (
    INSERT INTO deliveries (source, provider, job_id, received_at, headers, body, body_size, verdict, reason)
    SELECT source, provider, job_id, received_at, headers, body, size, verdict, reason
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::bytea[],
                $7::int[], $8::text[], $9::text[])
        WITH ORDINALITY AS t (source, provider, job_id, received_at, headers, body, size, verdict, reason, n)
    ORDER BY n
    RETURNING id
),
projected AS (
    INSERT INTO jobs (provider, job_id, status, progress, result_urls, error, provider_status, terminals,
                      params, seen, created_at, updated_at)
    SELECT * FROM unnest($10::text[], $11::text[], $12::text[], $13::int[], $14::jsonb[], $15::text[],
                         $16::text[], $17::jsonb[], $18::jsonb[], $19::jsonb[], $20::timestamptz[],
                         $21::timestamptz[])
    ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, progress = excluded.progress,
        result_urls = excluded.result_urls, error = excluded.error,
        provider_status = excluded.provider_status, terminals = excluded.terminals, params = excluded.params,
        seen = excluded.seen, updated_at = excluded.updated_at
),
queued AS (
    INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, next_attempt_at, created_at,
                        updated_at)
    SELECT k, kind, p, j, s, pl, st, $29, $29, $29
    FROM unnest($22::text[], $23::text[], $24::text[], $25::text[], $26::text[], $27::jsonb[], $28::text[])
        AS t (k, kind, p, j, s, pl, st)
    ON CONFLICT (key) DO NOTHING
)
SELECT COALESCE((SELECT array_agg(id ORDER BY id) FROM delivered), '{}'),
       CASE WHEN $30 THEN pg_notify('jobtrail_outbox', '') END
"""
# The events, numbered from the tail (from 1, refused attempts' events left out by the
# caller); the tail's row stays locked until COMMIT. $9: how many.
APPEND = """
WITH tail AS (UPDATE log_tail SET events = events + $9 RETURNING events - $9 AS s),
logged AS (
    INSERT INTO events (seq, provider, job_id, type, source, at, data, delivery_id, fingerprint)
    SELECT tail.s + t.n, t.provider, t.job_id, t.type, t.source, $8, t.data, t.delivery, t.fp
    FROM tail, unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                      $7::bigint[], $10::text[])
        AS t (n, provider, job_id, type, source, data, delivery, fp)
)
SELECT tail.s, pg_notify('jobtrail_log', (tail.s + $9)::text) FROM tail
"""


class Written(NamedTuple):
    results: list[Result]  # each request's answer
    appended: int  # how many events were appended
    outbox: bool  # outbox work was added or an attempt recorded


async def write_batch(
    conn: Any, requests: Sequence[IntakeRequest | AttemptRecord], planner: Planner
) -> Written:
    """The batch's transaction on `conn` (see the module); the caller commits it, or rolls
    it back if this raises."""
    keys = sorted(
        {(o.provider, o.job_id) for r in requests if type(r) is IntakeRequest for o in r.observations}
    )
    await conn.execute(_begin(keys))
    jobs: dict[JobKey, Job] = {}
    removed: set[JobKey] = set()
    if keys:
        for row in await conn.fetch(JOBS, [p for p, _ in keys], [j for _, j in keys]):
            if row[KEY + 2]:
                removed.add((row[KEY], row[KEY + 1]))
            else:
                job = rows.job_from(row)
                jobs[(job.provider, job.id)] = job
    now = utcnow()
    plan = plan_batch(requests, jobs, planner, now, removed)
    refused = set()
    for position, record in enumerate(plan.attempts):
        if await conn.fetchval(ATTEMPT, *_attempt_params(record, now)) is None:
            refused.add(position)
        elif record.sink_state is not None:
            name, reason = record.sink_state
            await conn.execute(UPSERT_SINK, name, now if reason else None, reason, now)
    seqs = numbered(plan, 1, refused)  # from the tail, which APPEND reads
    appended = sum(1 for seq in seqs if seq is not None)
    outbox = bool(plan.outbox) or len(refused) < len(plan.attempts)
    delivery_ids, _ = await conn.fetchrow(
        DELIVER, *_delivery_columns(plan), *_job_columns(plan.jobs), *_outbox_columns(plan), now, outbox
    )
    last_seq = 0
    if appended:
        columns = _event_columns(plan, seqs, delivery_ids)
        last_seq, _ = await conn.fetchrow(APPEND, *columns[:7], plan.at, appended, columns[7])
    return Written(settle(plan, delivery_ids, last_seq + 1, refused), appended, outbox)


def _begin(keys: Sequence[JobKey]) -> str:
    """BEGIN, and the jobs' locks in one statement."""
    return f"{BEGIN}; {lock_jobs(keys)}" if keys else BEGIN


def lock_jobs(keys: Sequence[JobKey]) -> str:
    """The jobs' locks, for the transaction, in one statement (numbers only: safe to write
    inline; unnest yields them in the array's order, so every transaction locks in one
    order)."""
    numbers = ",".join(map(str, _hashes(keys)))
    return f"SELECT pg_advisory_xact_lock({JOB_LOCKS}, h) FROM unnest('{{{numbers}}}'::int[]) AS h"


def _hashes(keys: Sequence[JobKey]) -> list[int]:
    """A 32-bit number per job, sorted: the second key of its advisory lock, in the order
    every transaction takes them (two jobs sharing a number only wait for each other)."""
    found = set()
    for provider, job_id in keys:
        digest = hashlib.blake2b(f"{provider}/{job_id}".encode(), digest_size=4).digest()
        found.add(int.from_bytes(digest, "big", signed=True))
    return sorted(found)


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
        record.retry_pending,
    )


def _columns(values: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*values, strict=True)] if values else [[] for _ in range(width)]


def _delivery_columns(plan: Plan) -> list[list[Any]]:
    values = []
    for planned in plan.deliveries:
        d = planned.delivery
        body = bytes(d.body)
        values.append(
            (
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
    return _columns(values, 9)


def _event_columns(plan: Plan, seqs: Sequence[int | None], delivery_ids: Sequence[int]) -> list[list[Any]]:
    """Events numbered from 1 (refused attempts' events left out), with their delivery's id."""
    values = [
        (
            seq,
            e.provider,
            e.job_id,
            e.type,
            e.source,
            rows.dumps(e.data),
            None if e.delivery is None else delivery_ids[e.delivery],
            e.fingerprint,
        )
        for seq, e in zip(seqs, plan.events, strict=True)
        if seq is not None
    ]
    return _columns(values, 8)


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


def _outbox_columns(plan: Plan) -> list[list[Any]]:
    values = [
        (item.key, item.kind, item.provider, item.job_id, item.sink, rows.dumps(item.payload), item.status)
        for item in plan.outbox
    ]
    return _columns(values, 7)

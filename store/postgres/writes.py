"""One batch of intakes and attempt records as one PostgreSQL transaction.

    BEGIN; lock the batch's jobs   a transaction-level advisory lock per job (existing or
                                   not), in one order (no deadlock): one round trip
    read them                      committed state, after the locks
    (plan the batch: core.intake.plan_batch, on what is committed; replicas plan at once)
    (record the attempts that still hold their lease; the others are refused)
    write everything           one statement: move the log's tail (its row stays locked
                               until COMMIT), insert deliveries, events, jobs, outbox work
                               numbered from it (each an INSERT of unnest(...)); NOTIFY
    COMMIT

The tail's row lock is what gives the log one order that readers can trust across
replicas: the next batch cannot take numbers until this one is committed, so every event
numbered before this batch's is visible before this batch's are, and "everything after N"
never skips an event that commits later. Only the last statement and the COMMIT hold it.
The job locks make planning safe: nobody changes a job between its read and its write,
and two replicas that see a new job at once do not both create it.
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

# Every statement of this transaction looks rows up by key, whatever the tables hold, so
# its plans are made once and kept (reads elsewhere are planned each time: see store.py).
BEGIN = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"
JOB_LOCKS = 0x6A6F6273  # "jobs": the first key of a job's advisory lock; the second, its hash
JOBS = f"""
SELECT j.* FROM unnest($1::text[], $2::text[]) AS k (provider, job_id)
JOIN LATERAL (
    SELECT {JOB_COLUMNS} FROM jobs WHERE jobs.provider = k.provider AND jobs.job_id = k.job_id LIMIT 1
) j ON true
"""
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
# Every table in one statement. `tail` is where the log ended, moved on by this batch's
# deliveries ($39) and events ($40); deliveries are numbered tail.d + their position
# (from 1), events tail.s + their number (from 1, refused attempts' events skipped by the
# caller), and an event's delivery is tail.d + the delivery's position. The foreign keys
# are checked at the end of the statement, when every row is in.
WRITE = """
WITH tail AS (
    UPDATE log_tail SET deliveries = deliveries + $39, events = events + $40
    RETURNING deliveries - $39 AS d, events - $40 AS s
),
delivered AS (
    INSERT INTO deliveries (id, source, provider, job_id, received_at, headers, body, body_size, verdict,
                            reason)
    SELECT tail.d + t.n, t.source, t.provider, t.job_id, t.received_at, t.headers, t.body, t.size, t.verdict,
           t.reason
    FROM tail, unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::bytea[],
                      $7::int[], $8::text[], $9::text[])
        WITH ORDINALITY AS t (source, provider, job_id, received_at, headers, body, size, verdict, reason, n)
),
logged AS (
    INSERT INTO events (seq, provider, job_id, type, source, at, data, delivery_id, fingerprint)
    SELECT tail.s + t.n, t.provider, t.job_id, t.type, t.source, $18, t.data, tail.d + t.delivery, t.fp
    FROM tail, unnest($10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[], $15::jsonb[],
                      $16::bigint[], $17::text[])
        AS t (n, provider, job_id, type, source, data, delivery, fp)
),
projected AS (
    INSERT INTO jobs (provider, job_id, status, progress, result_urls, error, provider_status, terminals,
                      params, seen, created_at, updated_at)
    SELECT * FROM unnest($19::text[], $20::text[], $21::text[], $22::int[], $23::jsonb[], $24::text[],
                         $25::text[], $26::jsonb[], $27::jsonb[], $28::jsonb[], $29::timestamptz[],
                         $30::timestamptz[])
    ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, progress = excluded.progress,
        result_urls = excluded.result_urls, error = excluded.error,
        provider_status = excluded.provider_status, terminals = excluded.terminals, params = excluded.params,
        seen = excluded.seen, updated_at = excluded.updated_at
),
queued AS (
    INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, next_attempt_at, created_at,
                        updated_at)
    SELECT k, kind, p, j, s, pl, st, $38, $38, $38
    FROM unnest($31::text[], $32::text[], $33::text[], $34::text[], $35::text[], $36::jsonb[], $37::text[])
        AS t (k, kind, p, j, s, pl, st)
    ON CONFLICT (key) DO NOTHING
)
SELECT tail.d, tail.s,
       CASE WHEN $40 > 0 THEN pg_notify('jobtrail_log', (tail.s + $40)::text) END,
       CASE WHEN $41 THEN pg_notify('jobtrail_outbox', '') END
FROM tail
"""


class Written(NamedTuple):
    results: list[Result]  # each request's answer
    appended: bool  # events were appended
    outbox: bool  # outbox work was added or an attempt recorded


async def write_batch(
    conn: Any, requests: Sequence[IntakeRequest | AttemptRecord], planner: Planner
) -> Written:
    """The batch's transaction on `conn` (see the module); the caller commits it, or rolls
    it back if this raises."""
    keys = sorted(
        {(o.provider, o.job_id) for r in requests if type(r) is IntakeRequest for o in r.observations}
    )
    await conn.execute(
        BEGIN + "".join(f"; SELECT pg_advisory_xact_lock({JOB_LOCKS}, {h})" for h in _hashes(keys))
    )
    jobs: dict[JobKey, Job] = {}
    if keys:
        for row in await conn.fetch(JOBS, [p for p, _ in keys], [j for _, j in keys]):
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
    seqs = numbered(plan, 1, refused)  # from the tail, which the statement reads
    appended = sum(1 for seq in seqs if seq is not None)
    outbox = bool(plan.outbox) or len(refused) < len(plan.attempts)
    last_delivery, last_seq, _, _ = await conn.fetchrow(
        WRITE,
        *_delivery_columns(plan),
        *_event_columns(plan, seqs),
        plan.at,
        *_job_columns(plan.jobs),
        *_outbox_columns(plan),
        now,
        len(plan.deliveries),
        appended,
        outbox,
    )
    return Written(settle(plan, last_delivery + 1, last_seq + 1, refused), appended > 0, outbox)


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


def _event_columns(plan: Plan, seqs: Sequence[int | None]) -> list[list[Any]]:
    """Events numbered from 1 (refused attempts' events left out); an event's delivery by
    its position from 1."""
    values = [
        (
            seq,
            e.provider,
            e.job_id,
            e.type,
            e.source,
            rows.dumps(e.data),
            None if e.delivery is None else e.delivery + 1,
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

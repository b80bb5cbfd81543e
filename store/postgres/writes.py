"""One batch of intakes and attempt records as one PostgreSQL transaction.

    BEGIN; lock the batch's jobs   a transaction-level advisory lock per job (existing or
                                   not), in one order (no deadlock): one round trip
    read them                      committed state, after the locks (and which of them
                                   retention removed: their tombstones)
    (plan the batch: core.intake.plan_batch, on what is committed; replicas plan at once)
    (record the attempts that still hold their lease; the others are refused)
    write deliveries, jobs, outbox work      one statement, each an INSERT of unnest(...)
    append the events and COMMIT   one message: move the log's tail (its row stays locked
                                   until COMMIT), insert the events numbered from it (they
                                   come in the message, as one JSON literal), NOTIFY,
                                   COMMIT (just COMMIT when there are none)
    read where the numbers began   a session setting the append left (after COMMIT)

The tail's row lock is what gives the log one order that readers can trust across
replicas: the next batch cannot take numbers until this one is committed, so every event
numbered before this batch's is visible before this batch's are, and "everything after N"
never skips an event that commits later. Only the append and the COMMIT hold it: that is
all the replicas do one at a time, and they are sent as one message, so the lock is never
held while this process's event loop gets round to sending the COMMIT (it was, and under
load that wait was most of the time the lock was held: bench/replicas). The job locks
make planning safe: nobody changes a job between its read and its write, and two
replicas that see a new job at once do not both create it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
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

# NOTIFY channels. Payloads end with the writer's origin (16 hex digits, one per store
# opened): a replica hears its own commits again through LISTEN, and skips them (it woke
# its waiters when it committed).
APPENDED, OUTBOX = "jobtrail_log", "jobtrail_outbox"
ORIGIN = re.compile(r"[0-9a-f]{16}")

# Every statement is planned each time it runs (store.py sets it for the connections): a
# plan kept from when `jobs` was nearly empty looked a job up through the wrong index, or
# by scanning the table, and cost grew with every row (138 ms a batch at 54,000 jobs,
# bench/replicas). Planning costs less than that: about 0.3 ms a batch.
# The transaction, and the setting where the append will say where its numbers began
# emptied first: a value left by this connection's last batch is never read as this one's
# (should the append insert nothing, FIRST fails instead).
BEGIN = "BEGIN; SELECT set_config('jobtrail.appended_after', '', false)"
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
# given), jobs, outbox work; and the events, staged. Each table's rows come as one array
# of records (the types of migration 5), not one array per column: asyncpg checks every
# element of an array parameter against collections.abc in Python, which made these
# parameters a third of a replica's write path.
DELIVER = """
WITH delivered AS (
    INSERT INTO deliveries (source, provider, job_id, received_at, headers, body, body_size, verdict, reason)
    SELECT source, provider, job_id, received_at, headers, body, body_size, verdict, reason
    FROM unnest($1::delivery_row[]) WITH ORDINALITY
    ORDER BY ordinality
    RETURNING id
),
projected AS (
    INSERT INTO jobs (provider, job_id, status, progress, result_urls, error, provider_status, terminals,
                      params, seen, created_at, updated_at)
    SELECT * FROM unnest($2::job_row[])
    ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, progress = excluded.progress,
        result_urls = excluded.result_urls, error = excluded.error,
        provider_status = excluded.provider_status, terminals = excluded.terminals, params = excluded.params,
        seen = excluded.seen, updated_at = excluded.updated_at
),
queued AS (
    INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, next_attempt_at, created_at,
                        updated_at)
    SELECT key, kind, provider, job_id, sink, payload, status, $4, $4, $4 FROM unnest($3::outbox_row[])
    ON CONFLICT (key) DO NOTHING
),
ids AS (SELECT COALESCE(array_agg(id ORDER BY id), '{}') AS ids FROM delivered)
SELECT ids.ids, CASE WHEN $5 THEN pg_notify('jobtrail_outbox', $6) END FROM ids
"""
# The events, numbered from the tail (from 1, refused attempts' events left out), and
# COMMIT: one message, so the tail's row is locked from the append to the end of the
# COMMIT and no longer (jobtrail_append, migration 6). It is the simple protocol, which
# takes no parameters: the events come in it as one JSON array in a dollar-quoted literal
# (its tag chosen so that the text does not hold it: `literal`), and the rest written
# into it are numbers, this writer's origin (16 hex digits) and the batch's time (an ISO
# date). They were staged in a temporary table by the statement before, and emptying
# that table at every COMMIT (a truncation: new files, cache invalidations) was a tenth of
# PostgreSQL's CPU per webhook (perf, bench/replicas). Where the numbers began comes back
# in a NOTICE (`AppendNotice`); FIRST reads it, should the NOTICE not come.
APPEND_AND_COMMIT = "SELECT jobtrail_append({count}, '{origin}', '{at}', {events}); COMMIT"
APPENDED_AFTER = re.compile(r"jobtrail appended after (\d+)")
FIRST = "SELECT current_setting('jobtrail.appended_after')::bigint + 1"


class Written(NamedTuple):
    """A batch written and not yet committed: `commit()` is the message that appends its
    events and commits, then `results(first_seq)` are the answers."""

    plan: Plan
    delivery_ids: list[int]
    refused: set[int]
    events: list[dict[str, Any]]  # what it appends, numbered from 1
    outbox: bool  # outbox work was added or an attempt recorded
    origin: str  # who writes it: its NOTIFYs say so (listen.py)

    @property
    def appended(self) -> int:
        return len(self.events)

    def commit(self) -> str:
        if not self.events:
            return "COMMIT"
        return APPEND_AND_COMMIT.format(
            count=len(self.events),
            origin=checked_origin(self.origin),
            at=self.plan.at.isoformat(),  # a datetime's: digits, '-', ':', '.', '+', 'T'
            events=literal(rows.dumps(self.events)),
        )

    def results(self, first_seq: int) -> list[Result]:
        return settle(self.plan, self.delivery_ids, first_seq, self.refused)


class AppendNotice:
    """A log listener (asyncpg's `add_log_listener`) for one commit: where the append's
    numbers began, from its NOTICE. The NOTICE comes before the COMMIT's answer on the
    same connection, and asyncpg calls listeners in the order it reads, so `after` is set
    by the time the COMMIT's `execute` returns, or never (FIRST then)."""

    __slots__ = ("after",)

    def __init__(self) -> None:
        self.after: int | None = None

    def __call__(self, conn: Any, message: Any) -> None:
        found = APPENDED_AFTER.fullmatch(getattr(message, "message", "") or "")
        if found:
            self.after = int(found[1])


def literal(text: str) -> str:
    """`text` as a dollar-quoted literal: taken as it is, whatever it holds, between two
    tags it does not hold (a random one, checked). JSON from `rows.dumps` has no NUL (it
    escapes control characters), which would end the message."""
    while True:
        tag = f"$j{secrets.token_hex(8)}$"
        if tag not in text:
            return f"{tag}{text}{tag}"


def checked_origin(token: str) -> str:
    """A writer's name in its NOTIFY payloads, checked: the append's message has it
    written into its SQL."""
    if not ORIGIN.fullmatch(token):
        raise ValueError(f"a writer's origin is 16 hex digits, not {token!r}")
    return token


async def write_batch(
    conn: Any, requests: Sequence[IntakeRequest | AttemptRecord], planner: Planner, origin: str
) -> Written:
    """The batch's transaction on `conn` up to its COMMIT (see the module): the caller
    sends `commit()`, or rolls back if this raises."""
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
    outbox = bool(plan.outbox) or len(refused) < len(plan.attempts)
    delivery_ids, _ = await conn.fetchrow(
        DELIVER, _deliveries(plan), _jobs(plan.jobs), _outbox(plan), now, outbox, origin
    )
    seqs = numbered(plan, 1, refused)  # from the tail, which the COMMIT's message reads
    return Written(plan, delivery_ids, refused, _events(plan, seqs, delivery_ids), outbox, origin)


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


def _deliveries(plan: Plan) -> list[tuple[Any, ...]]:
    """The deliveries as delivery_row records."""
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
    return values


def _events(plan: Plan, seqs: Sequence[int | None], delivery_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Events as the append reads them: numbered from 1 (refused attempts' events left
    out), with their delivery's id."""
    return [
        {
            "n": seq,
            "provider": e.provider,
            "job_id": e.job_id,
            "type": e.type,
            "source": e.source,
            "data": e.data,
            "delivery_id": None if e.delivery is None else delivery_ids[e.delivery],
            "fingerprint": e.fingerprint,
        }
        for seq, e in zip(seqs, plan.events, strict=True)
        if seq is not None
    ]


def _jobs(jobs: Mapping[JobKey, Job]) -> list[tuple[Any, ...]]:
    """The jobs as job_row records."""
    return [
        (
            job.provider,
            job.id,
            job.status._value_,
            job.progress,
            rows.dumps(job.result_urls),
            job.error,
            job.provider_status,
            rows.dumps([s._value_ for s in job.terminals]),
            rows.dumps(job.params) if job.params else "{}",
            rows.dumps(sorted(job.seen)),
            job.created_at,
            job.updated_at,
        )
        for job in jobs.values()
    ]


def _outbox(plan: Plan) -> list[tuple[Any, ...]]:
    """The outbox work as outbox_row records."""
    return [
        (item.key, item.kind, item.provider, item.job_id, item.sink, rows.dumps(item.payload), item.status)
        for item in plan.outbox
    ]

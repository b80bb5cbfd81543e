"""One batch of intakes and attempt records as one PostgreSQL transaction.

A batch of intakes alone, two round trips:

    read the batch's jobs          as committed now, each with its row's version (and
                                   which of them retention removed: their tombstones)
    (plan the batch: core.intake.plan_batch; replicas plan at once)
    write, append and commit       one message, a transaction of its own
                                   (jobtrail_write, migration 6): take the jobs' locks, a
                                   transaction-level advisory lock per job (existing or
                                   not) in one order (no deadlock); check that no job
                                   changed since the read, else refuse (`Changed`: the
                                   caller does it again the locked way, below); write the
                                   deliveries, jobs and outbox work; move the log's tail
                                   (its row stays locked until COMMIT), insert the events
                                   numbered from it; NOTIFY; COMMIT. The rows come in it
                                   as JSON literals; the deliveries' ids and the events'
                                   first number come back in a NOTICE

With attempt records, or after `Changed`, three: BEGIN and the jobs' locks; read them;
(plan; record the attempts that still hold their lease, the others are refused: that
decides which events are written); the same write, with no check, and COMMIT. Before
(bench/replicas, figures in the README) every batch took five: BEGIN, read, a statement
for the rows, the append with its COMMIT, and a read of where the numbers began.

The tail's row lock is what gives the log one order that readers can trust across
replicas: the next batch cannot take numbers until this one is committed, so every event
numbered before this batch's is visible before this batch's are, and "everything after N"
never skips an event that commits later. Only the append and the COMMIT hold it: that is
all the replicas do one at a time, and they are in one message, so the lock is never
held while this process's event loop gets round to sending the COMMIT (it was, and under
load that wait was most of the time the lock was held: bench/replicas). The job locks
make planning safe: nobody changes a job between the read a plan rests on (checked
under the locks, or taken under them) and its write, and two replicas that see a new
job at once do not both create it. A job's row version is its `xmin`, which every
update of the row replaces (a poll count's too: then the batch is only planned again).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
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
ISO = re.compile(r"[0-9T:.+-]+")

# Every statement is planned each time it runs (store.py sets it for the connections): a
# plan kept from when `jobs` was nearly empty looked a job up through the wrong index, or
# by scanning the table, and cost grew with every row (138 ms a batch at 54,000 jobs,
# bench/replicas). Planning costs less than that: about 0.3 ms a batch.
BEGIN = "BEGIN"
JOB_LOCKS = 0x6A6F6273  # "jobs": the first key of a job's advisory lock; the second, its hash
# The batch's jobs, and the keys among them of jobs removed by retention (tombstones):
# a job's columns and its row's version (`xmin`: every update makes a new one), then its
# key and whether it is a tombstone (its columns are NULL).
JOBS = f"""
SELECT j.*, k.provider, k.job_id, r.rid IS NOT NULL
FROM unnest($1::text[], $2::text[]) AS k (provider, job_id)
LEFT JOIN LATERAL (
    SELECT {JOB_COLUMNS}, xmin::text FROM jobs
    WHERE jobs.provider = k.provider AND jobs.job_id = k.job_id LIMIT 1
) j ON true
LEFT JOIN removed_jobs r ON j.provider IS NULL AND r.provider = k.provider AND r.job_id = k.job_id
WHERE j.provider IS NOT NULL OR r.rid IS NOT NULL
"""
VERSION = len(JOB_COLUMNS.split(","))  # where a row of JOBS gives the version, then the key
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
# The batch's writes, its append and COMMIT: one message (jobtrail_write, migration 6),
# so the log's tail is locked from the append to the end of the COMMIT and no longer.
# Alone, it is a transaction of its own (the simple protocol commits a lone statement);
# after BEGIN, a COMMIT follows it. It is the simple protocol, which takes no
# parameters: the rows come in it as JSON in dollar-quoted literals (each tag chosen so
# that the text does not hold it: `literal`); the rest written into it are numbers,
# booleans, ISO dates and this writer's origin (16 hex digits). The deliveries' ids and
# where the events' numbers began come back in a NOTICE (`Wrote`), or, should it not
# come, from session settings (FIRST). Before, the rows went as parameters of a
# statement of their own (a round trip more), and the events through a temporary table
# emptied at every COMMIT: a truncation (new files, cache invalidations), a tenth of
# PostgreSQL's CPU per webhook (perf, bench/replicas).
WRITE = (
    "SELECT jobtrail_write({lock_class}, {locks}, {expected}::json, {deliveries}::json, {jobs}::json, "
    "{queued}::json, {events}::json, {count}, '{at}', '{now}', {outbox}, '{origin}')"
)
CHANGED = "JT409"  # jobtrail_write's error: a job read without its lock changed since
WROTE = re.compile(r"jobtrail wrote \{([0-9,]*)\} after (\d+|-)")
FIRST = "SELECT current_setting('jobtrail.delivered'), current_setting('jobtrail.appended_after')"


class Written(NamedTuple):
    """A batch planned, its attempts recorded, and nothing else written yet: `commit()`
    is the message that writes the rest and commits, then `results(ids, after)` are the
    answers."""

    plan: Plan
    refused: set[int]
    batch: dict[str, list[dict[str, Any]]]  # the deliveries, jobs, outbox work and events
    outbox: bool  # outbox work was added or an attempt recorded
    origin: str  # who writes it: its NOTIFYs say so (listen.py)
    now: datetime
    # Read without the jobs' locks: their locks (numbers) and what the plan expects of
    # them, for the write to check under the locks. None: in a transaction that holds them.
    locks: list[int] | None
    expected: list[dict[str, Any]] | None
    read_seconds: float | None  # the jobs' read, its round trip (None: no job to read)

    @property
    def appended(self) -> int:
        """How many events it appends (numbered from 1)."""
        return len(self.batch["events"])

    def commit(self) -> str:
        message = WRITE.format(
            lock_class=JOB_LOCKS,
            locks="NULL" if self.locks is None else f"'{{{','.join(map(str, self.locks))}}}'::integer[]",
            expected="NULL" if self.expected is None else literal(rows.dumps(self.expected)),
            deliveries=literal(rows.dumps(self.batch["deliveries"])),
            jobs=literal(rows.dumps(self.batch["jobs"])),
            queued=literal(rows.dumps(self.batch["outbox"])),
            events=literal(rows.dumps(self.batch["events"])),
            count=int(self.appended),
            at=_iso(self.plan.at),
            now=_iso(self.now),
            outbox="true" if self.outbox else "false",
            origin=checked_origin(self.origin),
        )
        return message if self.locks is not None else f"{message}; COMMIT"

    def results(self, delivery_ids: Sequence[int], after: int | None) -> list[Result]:
        """The answers, told the deliveries' ids and the number the events follow."""
        if len(delivery_ids) != len(self.plan.deliveries):
            raise ValueError(f"{len(self.plan.deliveries)} deliveries written, told {len(delivery_ids)} ids")
        if self.appended and after is None:
            raise ValueError(f"{self.appended} events appended, and no number they follow")
        return settle(self.plan, delivery_ids, (after or 0) + 1, self.refused)


class Wrote:
    """A log listener (asyncpg's `add_log_listener`) for one commit: the deliveries' ids
    and where the events' numbers began (`after`, None when it appended none), from the
    write's NOTICE. The NOTICE comes before the COMMIT's answer on the same connection,
    and asyncpg calls listeners in the order it reads, so `heard` is set by the time the
    COMMIT's `execute` returns, or never (FIRST then)."""

    __slots__ = ("after", "delivery_ids", "heard")

    def __init__(self) -> None:
        self.heard = False
        self.delivery_ids: list[int] = []
        self.after: int | None = None

    def __call__(self, conn: Any, message: Any) -> None:
        found = WROTE.fullmatch(getattr(message, "message", "") or "")
        if found:
            self.tell(found[1], found[2])

    def tell(self, ids: str, after: str) -> None:
        """From the NOTICE or the session settings: ids as `1,2,3` (in braces from the
        setting), after as a number, or as '-' or '' when nothing was appended."""
        self.delivery_ids = [int(i) for i in ids.strip("{}").split(",") if i]
        self.after = int(after) if after.isdigit() else None
        self.heard = True


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


class Changed(Exception):
    """A job read without its lock changed before the write took it: nothing written."""


async def write_batch(
    conn: Any,
    requests: Sequence[IntakeRequest | AttemptRecord],
    planner: Planner,
    origin: str,
    *,
    locked: bool,
) -> Written:
    """The batch up to the message that writes it (see the module): the caller sends
    `commit()`, or rolls back if this raises. `locked`: in a transaction that takes the
    jobs' locks before reading them (attempt records need it: their outcome decides
    which events are written); else the jobs are read as they are, and the write checks
    them under their locks."""
    keys = sorted(
        {(o.provider, o.job_id) for r in requests if type(r) is IntakeRequest for o in r.observations}
    )
    if locked:
        await conn.execute(_begin(keys))
    elif any(type(r) is not IntakeRequest for r in requests):
        raise ValueError("attempt records are written under their jobs' locks")
    started = time.perf_counter()
    jobs, removed, expected = await _read_jobs(conn, keys)
    read_seconds = time.perf_counter() - started if keys else None
    now = utcnow()
    plan = plan_batch(requests, jobs, planner, now, removed)
    refused = set()
    for position, record in enumerate(plan.attempts):
        if await conn.fetchval(ATTEMPT, *_attempt_params(record, now)) is None:
            refused.add(position)
        elif record.sink_state is not None:
            name, reason = record.sink_state
            await conn.execute(UPSERT_SINK, name, now if reason else None, reason, now)
    batch = {
        "deliveries": _deliveries(plan),
        "jobs": _jobs(plan.jobs),
        "outbox": _outbox(plan),
        "events": _events(plan, numbered(plan, 1, refused)),  # from the tail, which the write reads
    }
    outbox = bool(plan.outbox) or len(refused) < len(plan.attempts)
    if locked:
        return Written(plan, refused, batch, outbox, origin, now, None, None, read_seconds)
    return Written(plan, refused, batch, outbox, origin, now, _hashes(keys), expected, read_seconds)


async def _read_jobs(
    conn: Any, keys: Sequence[JobKey]
) -> tuple[dict[JobKey, Job], set[JobKey], list[dict[str, Any]]]:
    """The jobs as committed, the keys of those retention removed, and what the write
    is to find under the locks: each job's row version (None: no row), and whether it
    had a tombstone."""
    jobs: dict[JobKey, Job] = {}
    removed: set[JobKey] = set()
    expected = {k: {"provider": k[0], "job_id": k[1], "version": None, "removed": False} for k in keys}
    if keys:
        for row in await conn.fetch(JOBS, [p for p, _ in keys], [j for _, j in keys]):
            key = (row[VERSION + 1], row[VERSION + 2])
            if row[VERSION + 3]:
                removed.add(key)
                expected[key]["removed"] = True
            else:
                jobs[key] = rows.job_from(row)
                expected[key]["version"] = row[VERSION]
    return jobs, removed, list(expected.values())


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


def _iso(at: datetime) -> str:
    """A time as ISO text for the message, checked: nothing but a date and time."""
    text = at.isoformat()
    if not ISO.fullmatch(text):
        raise ValueError(f"not a plain ISO time: {text!r}")
    return text


def _deliveries(plan: Plan) -> list[dict[str, Any]]:
    """The deliveries, in order (`i`), their bodies cut to what is stored, in base64."""
    values = []
    for i, planned in enumerate(plan.deliveries):
        d = planned.delivery
        body = bytes(d.body)
        values.append(
            {
                "i": i,
                "source": d.source,
                "provider": d.provider,
                "job_id": d.job_id,
                "received_at": d.received_at,
                "headers": d.headers,
                "body": base64.b64encode(body[:MAX_STORED_BODY]).decode(),
                "body_size": len(body),
                "verdict": planned.verdict._value_,
                "reason": planned.reason,
            }
        )
    return values


def _events(plan: Plan, seqs: Sequence[int | None]) -> list[dict[str, Any]]:
    """The events: numbered from 1 (refused attempts' events left out), with their
    delivery's place among the batch's deliveries (the write turns it into its id)."""
    return [
        {
            "n": seq,
            "provider": e.provider,
            "job_id": e.job_id,
            "type": e.type,
            "source": e.source,
            "data": e.data,
            "delivery": e.delivery,
            "fingerprint": e.fingerprint,
        }
        for seq, e in zip(seqs, plan.events, strict=True)
        if seq is not None
    ]


def _jobs(jobs: Mapping[JobKey, Job]) -> list[dict[str, Any]]:
    return [
        {
            "provider": job.provider,
            "job_id": job.id,
            "status": job.status._value_,
            "progress": job.progress,
            "result_urls": job.result_urls,
            "error": job.error,
            "provider_status": job.provider_status,
            "terminals": [s._value_ for s in job.terminals],
            "params": job.params or {},
            "seen": sorted(job.seen),
            "created_at": job.created_at,
            "updated_at": job.updated_at,
        }
        for job in jobs.values()
    ]


def _outbox(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "key": item.key,
            "kind": item.kind,
            "provider": item.provider,
            "job_id": item.job_id,
            "sink": item.sink,
            "payload": item.payload,
            "status": item.status,
        }
        for item in plan.outbox
    ]

"""The SQLite writer's statements, and a planned batch turned into one transaction.

A batch's transaction (a `Batch`, run by the writer process, store/sqlite/writer.py) is
the inserts and upserts of a `Plan`, its attempt records (each guarded by the lease it
must still hold), and the outbox claims, lease renewals and releases, which are
statements rather than planned rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.core.intake import AttemptRecord, IntakeRequest, JobKey, Plan, Result
from jobtrail.core.model import OutboxEntry, isoformat, utcnow
from jobtrail.store import rows
from jobtrail.store.base import Claim, Polls
from jobtrail.store.sqlite.writer import Batch

INSERT_DELIVERY = f"INSERT INTO deliveries ({rows.DELIVERY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
# An event's row names its job by row id (migration 7): the job's row is written first
# (new jobs open a batch), so the lookup finds it; a missing one fails the NOT NULL.
INSERT_EVENT = (
    "INSERT INTO event_log (seq, jid, type, source, at, data, delivery_id, fingerprint) VALUES "
    "(?1, (SELECT jid FROM jobs WHERE provider = ?2 AND job_id = ?3), ?4, ?5, ?6, ?7, ?8, ?9)"
)
UPSERT_JOB = (
    f"INSERT INTO jobs ({rows.JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, "
    "progress = excluded.progress, result_urls = excluded.result_urls, "
    "error = excluded.error, provider_status = excluded.provider_status, "
    "terminals = excluded.terminals, params = excluded.params, "
    "updated_at = excluded.updated_at"
)
INSERT_JOB = UPSERT_JOB.split(" ON CONFLICT ")[0]
_ATTEMPT = (
    "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
    "payload = COALESCE(?, payload), lease_until = NULL, lease_owner = NULL, updated_at = ? WHERE id = ?"
)
ATTEMPT_BY_OWNER = _ATTEMPT + " AND lease_owner = ?"  # the lease holder's record
ATTEMPT_BY_REPLAY = _ATTEMPT + " AND status <> 'pending'"  # a replay: not while pending
# A retry by hand: pending, and no live lease (a worker attempting it now).
ATTEMPT_BY_RETRY = _ATTEMPT + " AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)"
UPSERT_SINK = (
    "INSERT INTO sinks (name, disabled_at, reason, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET disabled_at = excluded.disabled_at, reason = excluded.reason, "
    "updated_at = excluded.updated_at"
)
DUE = """
    SELECT o.id FROM outbox o
    WHERE o.kind = ? AND o.status = 'pending' AND o.next_attempt_at <= ?
      AND (o.lease_until IS NULL OR o.lease_until <= ?)
      AND o.sink NOT IN (SELECT name FROM sinks WHERE disabled_at IS NOT NULL)
      AND NOT (? AND o.kind = 'notify' AND json_extract(o.payload, '$.status') = 'succeeded'
               AND EXISTS (SELECT 1 FROM outbox d INDEXED BY outbox_job
                           WHERE d.provider = o.provider AND d.job_id = o.job_id
                             AND d.kind = 'download' AND d.status = 'pending'))
    ORDER BY o.next_attempt_at, o.id LIMIT ?
"""
CLAIM = f"""
UPDATE outbox SET lease_until = ?, lease_owner = ?, updated_at = ? WHERE id IN ({DUE})
RETURNING {rows.OUTBOX_COLUMNS}
"""
RENEW = (
    "UPDATE outbox SET lease_until = ? WHERE lease_owner = ? AND status = 'pending' "
    "AND id IN (SELECT value FROM json_each(?)) RETURNING id"
)
RELEASE = "UPDATE outbox SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = ? RETURNING id"
INSERT_OUTBOX = (
    "INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, "
    "next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (key) DO NOTHING"
)


class Renew(NamedTuple):
    """Extend `owner`'s leases on `entry_ids` to `until` (a statement, like a claim)."""

    owner: str
    entry_ids: Collection[int]
    until: datetime


class Release(NamedTuple):
    """Drop every lease `owner` holds (a statement, like a claim)."""

    owner: str


class Polled(NamedTuple):
    """Add to jobs' poll counts (a statement, like a claim; one record per job)."""

    polls: Sequence[Polls]


# The records as a JSON array of [provider, job_id, count, time, digest].
RECORD_POLLS = """
UPDATE jobs SET polls = jobs.polls + p.n, polled_at = p.at, poll_digest = p.digest
FROM (SELECT json_extract(value, '$[0]') AS provider, json_extract(value, '$[1]') AS job_id,
             json_extract(value, '$[2]') AS n, json_extract(value, '$[3]') AS at,
             json_extract(value, '$[4]') AS digest
      FROM json_each(?)) AS p
WHERE jobs.provider = p.provider AND jobs.job_id = p.job_id
RETURNING jobs.jid
"""

Command = Claim | Renew | Release | Polled
COMMANDS = (Claim, Renew, Release, Polled)
Write = IntakeRequest | AttemptRecord | Command
Answer = Result | list[OutboxEntry] | list[int]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A planned batch, the transaction that writes it, and the requests in order
    (commands among them). `epoch`: the writer memory it was planned from."""

    plan: Plan
    batch: Batch
    requests: Sequence[Write]
    new_jobs: Sequence[JobKey]  # planned as new: the write checks that they are
    epoch: int


def prepare(plan: Plan, requests: Sequence[Write], new_jobs: Sequence[JobKey], epoch: int) -> Prepared:
    """The transaction for `plan`. Jobs planned as new are inserted on their own and
    first: a job wrongly taken for new fails before anything else is written."""
    now = utcnow()
    new = set(new_jobs)
    new_rows: list[Any] = []
    job_rows: list[Any] = []
    for key, job in plan.jobs.items():
        (new_rows if key in new else job_rows).append(rows.job_row(job))
    at = rows.micros(plan.at)
    batch = Batch(
        new_jobs=(INSERT_JOB, new_rows),
        attempts=[attempt_steps(record, now) for record in plan.attempts],
        deliveries=(
            INSERT_DELIVERY,
            [rows.delivery_row(d.delivery, d.verdict, d.reason) for d in plan.deliveries],
        ),
        events=(INSERT_EVENT, [rows.event_row(e, at) for e in plan.events]),
        writes=[
            (UPSERT_JOB, job_rows),
            (INSERT_OUTBOX, [rows.outbox_row(item, now) for item in plan.outbox]),
        ],
        queries=[command_query(r, now) for r in requests if isinstance(r, COMMANDS)],
    )
    return Prepared(plan, batch, requests, new_jobs, epoch)


def attempt_steps(record: AttemptRecord, now: datetime) -> list[tuple[str, tuple[Any, ...]]]:
    """The guarded update of one attempt record, then its sink switch if any."""
    values = rows.attempt_row(record, now)
    if record.retry_pending:
        steps = [(ATTEMPT_BY_RETRY, (*values, rows.stamp(now)))]
    elif record.owner is None:
        steps = [(ATTEMPT_BY_REPLAY, values)]
    else:
        steps = [(ATTEMPT_BY_OWNER, (*values, record.owner))]
    if record.sink_state is not None:
        name, reason = record.sink_state
        stamp = rows.stamp(now)
        steps.append((UPSERT_SINK, (name, stamp if reason else None, reason, stamp)))
    return steps


def command_query(command: Command, now: datetime) -> tuple[str, tuple[Any, ...]]:
    if isinstance(command, Claim):
        return CLAIM, claim_params(command)
    if isinstance(command, Renew):
        return RENEW, (rows.stamp(command.until), command.owner, rows.dumps(sorted(command.entry_ids)))
    if isinstance(command, Polled):
        found = [
            (p.provider, p.job_id, p.answers, isoformat(p.last_at), p.last_digest) for p in command.polls
        ]
        return RECORD_POLLS, (rows.dumps(found),)
    return RELEASE, (command.owner,)


def due_params(claim: Claim) -> tuple[Any, ...]:
    now = rows.stamp(claim.now)
    return (claim.kind, now, now, int(claim.wait_for_downloads), claim.limit)


def claim_params(claim: Claim) -> tuple[Any, ...]:
    return (rows.stamp(claim.lease_until), claim.owner, rows.stamp(claim.now), *due_params(claim))


def command_result(command: Command, found: list[Any]) -> list[OutboxEntry] | list[int]:
    if isinstance(command, Claim):
        entries = [rows.outbox_from(row) for row in found]
        return sorted(entries, key=lambda e: (e.next_attempt_at, e.id))
    return [row[0] for row in found]

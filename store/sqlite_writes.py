"""The SQLite writer's statements, and a planned batch turned into one transaction.

A batch's transaction (a `Batch`, run by the writer process, store/sqlite_writer.py) is
the inserts and upserts of a `Plan`, attempt records, sink switches, and the outbox
claims and lease releases, which are statements rather than planned rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.intake import AttemptRecord, IntakeRequest, JobKey, Plan
from core.model import Event, IntakeResult, OutboxEntry, utcnow
from store import rows
from store.base import Claim
from store.sqlite_writer import Batch

LAST_IDS = "SELECT (SELECT COALESCE(MAX(id), 0) FROM deliveries), (SELECT COALESCE(MAX(seq), 0) FROM events)"
INSERT_DELIVERY = f"INSERT INTO deliveries ({rows.DELIVERY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
INSERT_EVENT = f"INSERT INTO events ({rows.EVENT_COLUMNS}, fingerprint) VALUES (?,?,?,?,?,?,?,?,?)"
UPSERT_JOB = (
    f"INSERT INTO jobs ({rows.JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, "
    "progress = excluded.progress, result_urls = excluded.result_urls, "
    "error = excluded.error, provider_status = excluded.provider_status, "
    "terminals = excluded.terminals, params = excluded.params, seen = excluded.seen, "
    "updated_at = excluded.updated_at"
)
INSERT_JOB = UPSERT_JOB.split(" ON CONFLICT ")[0]
UPDATE_ATTEMPT = (
    "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
    "payload = COALESCE(?, payload), lease_until = NULL, updated_at = ? WHERE id = ?"
)
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
               AND EXISTS (SELECT 1 FROM outbox d WHERE d.provider = o.provider AND d.job_id = o.job_id
                           AND d.kind = 'download' AND d.status = 'pending'))
    ORDER BY o.next_attempt_at, o.id LIMIT ?
"""
CLAIM = f"""
UPDATE outbox SET lease_until = ?, updated_at = ? WHERE id IN ({DUE})
RETURNING {rows.OUTBOX_COLUMNS}
"""
RELEASE = "UPDATE outbox SET lease_until = NULL WHERE lease_until IS NOT NULL RETURNING id"
INSERT_OUTBOX = (
    "INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, "
    "next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (key) DO NOTHING"
)


class Release(NamedTuple):
    """Drop every lease (a statement, like a claim)."""


Write = IntakeRequest | AttemptRecord | Claim | Release
Result = IntakeResult | Event | None | list[OutboxEntry] | list[int]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A planned batch, the transaction that writes it, and the requests in order
    (claims among them)."""

    plan: Plan
    batch: Batch
    requests: Sequence[Write]
    new_jobs: Sequence[JobKey] = ()  # planned as new: the write checks that they are


def prepare(
    plan: Plan, after: tuple[int, int], requests: Sequence[Write], new_jobs: Sequence[JobKey]
) -> Prepared:
    """The transaction for `plan`, refused unless the log still ends at `after`. Jobs
    planned as new are inserted on their own and first: a job wrongly taken for new
    fails before anything else is written."""
    now = utcnow()
    new = set(new_jobs)
    new_rows: list[Any] = []
    job_rows: list[Any] = []
    for key, job in plan.jobs.items():
        (new_rows if key in new else job_rows).append(rows.job_row(job))
    sinks = [r.sink_state for r in plan.attempts if r.sink_state is not None]
    writes = (
        [rows.delivery_row(d.id, d.delivery, d.verdict, d.reason) for d in plan.deliveries],
        [rows.event_row(e.event, e.fingerprint) for e in plan.events],
        job_rows,
        [rows.outbox_row(item, now) for item in plan.outbox],
        [rows.attempt_row(record, now) for record in plan.attempts],
        [(name, rows.stamp(now) if reason else None, reason, rows.stamp(now)) for name, reason in sinks],
    )
    batch = Batch(
        guard=(LAST_IDS, after),
        new=(INSERT_JOB, new_rows),
        writes=list(zip(_INSERTS, writes, strict=True)),
        queries=[
            (CLAIM, claim_params(r)) if isinstance(r, Claim) else (RELEASE, ())
            for r in requests
            if isinstance(r, Claim | Release)
        ],
    )
    return Prepared(plan, batch, requests, new_jobs)


def due_params(claim: Claim) -> tuple[Any, ...]:
    now = rows.stamp(claim.now)
    return (claim.kind, now, now, int(claim.wait_for_downloads), claim.limit)


def claim_params(claim: Claim) -> tuple[Any, ...]:
    return (rows.stamp(claim.lease_until), rows.stamp(claim.now), *due_params(claim))


_INSERTS = (INSERT_DELIVERY, INSERT_EVENT, UPSERT_JOB, INSERT_OUTBOX, UPDATE_ATTEMPT, UPSERT_SINK)


def job_queries(keys: Iterable[JobKey]) -> Iterable[tuple[str, list[str]]]:
    """Queries loading jobs through the (provider, job_id) unique index."""
    by_provider: dict[str, list[str]] = {}
    for provider, job_id in keys:
        by_provider.setdefault(provider, []).append(job_id)
    for provider, ids in by_provider.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            yield (
                f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE provider = ? AND job_id IN ({marks})",
                [provider, *chunk],
            )


def claimed(found: Any) -> list[OutboxEntry]:
    entries = [rows.outbox_from(row) for row in found]
    return sorted(entries, key=lambda e: (e.next_attempt_at, e.id))

"""The SQLite writer's statements and the rows of a planned batch.

Everything here runs inside the one write transaction of a batch (store/sqlite.py):
the inserts and upserts of a `Plan`, attempt records, sink switches, and the outbox
claims and lease releases, which are statements rather than planned rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.intake import AttemptRecord, IntakeRequest, JobKey, Plan
from core.model import Event, IntakeResult, OutboxEntry, utcnow
from store import rows
from store.base import Claim, StoreError
from store.sqlite_thread import transaction

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
    """A planned batch, its rows, where the log must end before it is written, and the
    requests in order (claims among them)."""

    plan: Plan
    rows: tuple[list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]]
    after: tuple[int, int]
    requests: Sequence[Write]
    commands: Sequence[Claim | Release]
    new_jobs: Sequence[JobKey] = ()  # planned as new: inserted first, so the check comes first


class ForeignWrite(StoreError):
    """The log does not end where the plan assumed: another process wrote to it."""


class JobsExist(Exception):
    """Jobs the plan took for new are stored already; nothing was written."""

    def __init__(self, found: list[Any]) -> None:
        super().__init__(f"{len(found)} jobs planned as new exist")
        self.found = found


def plan_rows(plan: Plan) -> tuple[list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]]:
    now = utcnow()
    sinks = [r.sink_state for r in plan.attempts if r.sink_state is not None]
    return (
        [rows.delivery_row(d.id, d.delivery, d.verdict, d.reason) for d in plan.deliveries],
        [rows.event_row(e.event, e.fingerprint) for e in plan.events],
        [rows.job_row(job) for job in plan.jobs.values()],
        [rows.outbox_row(item, now) for item in plan.outbox],
        [rows.attempt_row(record, now) for record in plan.attempts],
        [(name, rows.stamp(now) if reason else None, reason, rows.stamp(now)) for name, reason in sinks],
    )


def due_params(claim: Claim) -> tuple[Any, ...]:
    now = rows.stamp(claim.now)
    return (claim.kind, now, now, int(claim.wait_for_downloads), claim.limit)


def claim_params(claim: Claim) -> tuple[Any, ...]:
    return (rows.stamp(claim.lease_until), rows.stamp(claim.now), *due_params(claim))


_INSERTS = (INSERT_DELIVERY, INSERT_EVENT, UPSERT_JOB, INSERT_OUTBOX, UPDATE_ATTEMPT, UPSERT_SINK)


def write(conn: sqlite3.Connection, prepared: Prepared) -> list[list[Any]]:
    """Write a prepared batch and run its claims in one transaction (on the writer thread);
    return each claim's rows. Refused, with nothing written, if the log does not end where
    the plan assumed (ForeignWrite) or a job planned as new exists (JobsExist)."""

    def steps(conn: sqlite3.Connection) -> list[list[Any]]:
        if tuple(conn.execute(LAST_IDS).fetchone()) != prepared.after:
            raise ForeignWrite("another writer changed the log; the batch is planned again")
        deliveries, events, jobs, *rest = prepared.rows
        new = set(prepared.new_jobs)
        if new:  # first: a job wrongly taken for new must be the first thing to fail
            _insert_new_jobs(conn, [row for row in jobs if (row[0], row[1]) in new], prepared.new_jobs)
            jobs = [row for row in jobs if (row[0], row[1]) not in new]
        for query, rows_ in zip(_INSERTS, (deliveries, events, jobs, *rest), strict=True):
            if rows_:
                conn.executemany(query, rows_)
        return [_run(conn, command) for command in prepared.commands]

    return transaction(conn, steps)


def _insert_new_jobs(conn: sqlite3.Connection, rows_: list[Any], keys: Sequence[JobKey]) -> None:
    """A plain INSERT: the unique index it probes anyway is the check that each job is new."""
    try:
        conn.executemany(INSERT_JOB, rows_)
    except sqlite3.IntegrityError:
        found = [row for query, params in job_queries(keys) for row in conn.execute(query, params)]
        if found:
            raise JobsExist(found) from None
        raise


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


def _run(conn: sqlite3.Connection, command: Claim | Release) -> list[Any]:
    if isinstance(command, Claim):
        return conn.execute(CLAIM, claim_params(command)).fetchall()
    return conn.execute(RELEASE).fetchall()


def claimed(found: Any) -> list[OutboxEntry]:
    entries = [rows.outbox_from(row) for row in found]
    return sorted(entries, key=lambda e: (e.next_attempt_at, e.id))

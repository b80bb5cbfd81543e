"""The PostgreSQL store's read queries, by name: each a statement, or a function giving
the statement and its parameters where filters are optional. Values are always bound;
JSON comes back as text and times as `datetime`, which store/rows.py reads as it reads
SQLite's rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from jobtrail.core.intake import JobKey
from jobtrail.core.model import Verdict
from jobtrail.store.base import DeliveryFilter, JobFilter
from jobtrail.store.rows import LISTED_OUTBOX, TABLES, detail_query

JOB_COLUMNS = (
    "provider, job_id, status, progress, result_urls::text, error, provider_status, terminals::text, "
    "params::text, seen::text, created_at, updated_at"
)
LISTED_COLUMNS = JOB_COLUMNS.replace("seen::text", "'[]'")  # `Store.list_jobs`: no `seen`
EVENT_COLUMNS = "seq, provider, job_id, type, source, at, data::text, delivery_id"
DELIVERY_COLUMNS = (
    "id, source, provider, job_id, received_at, headers::text, body, body_size, verdict, reason"
)
OUTBOX_COLUMNS = (
    "id, key, kind, provider, job_id, sink, payload::text, status, attempts, last_error, created_at, "
    "updated_at, next_attempt_at"
)

Query = tuple[str, list[Any]]

JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE provider = $1 AND job_id = $2"
POLLS = "SELECT polls, polled_at, poll_digest FROM jobs WHERE provider = $1 AND job_id = $2"
RECORD_POLLS = """
UPDATE jobs SET polls = jobs.polls + p.n, polled_at = p.at, poll_digest = p.digest
FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::text[])
    AS p (provider, job_id, n, at, digest)
WHERE jobs.provider = p.provider AND jobs.job_id = p.job_id
RETURNING jobs.jid
"""
OPEN_JOBS = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE provider = $1 AND status IN ('queued', 'processing') "
    "ORDER BY jid LIMIT $2"
)
OPEN_JOBS_AFTER = (
    f"SELECT {JOB_COLUMNS}, jid FROM jobs WHERE provider = $1 AND status IN ('queued', 'processing') "
    "AND jid > $2 ORDER BY jid LIMIT $3"
)
JOB_EVENTS = (
    f"SELECT {EVENT_COLUMNS} FROM events "
    "WHERE provider = $1 AND job_id = $2 AND seq > $3 ORDER BY seq LIMIT $4"
)
EVENTS_AFTER = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
LAST_SEQ = "SELECT COALESCE(max(seq), 0) FROM events"
JOB_DETAIL = detail_query(JOB_COLUMNS, OUTBOX_COLUMNS, "provider = $1 AND job_id = $2")
JOB_OUTBOX = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE provider = $1 AND job_id = $2 ORDER BY id"
OUTBOX_ENTRY = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
DISABLED_SINKS = "SELECT name, reason FROM sinks WHERE disabled_at IS NOT NULL"
PING = "SELECT 1"


def _where(clauses: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """`a = $1 AND b = $2` of the clauses whose value is given (None: not filtered); each
    clause holds one `{}` where its placeholder goes."""
    given = [(clause, value) for clause, value in clauses if value is not None]
    parts = [clause.format(f"${n}") for n, (clause, _) in enumerate(given, 1)]
    return " AND ".join(["true", *parts]), [value for _, value in given]


Span = tuple[int | None, int | None]  # keys from the first (included) to the second
NO_SPAN: Span = (None, None)

# The tables whose rows are numbered as they come: (key, time column).
TIMED = {
    "jobs": ("jid", "created_at"),
    "outbox": ("id", "created_at"),
    "deliveries": ("id", "received_at"),
    "events": ("seq", "at"),
}


def first_key_at(table: str, at: datetime) -> Query:
    """The first key of `table` whose row is as late as `at` (the last key + 1 if none
    is), by bisection over the keys in one statement: a recursive query that halves
    [lo, hi) with a primary-key probe a step."""
    key, column = TIMED[table]
    probe = f"(SELECT {{}} FROM {table} WHERE {key} >= (lo + hi) / 2 ORDER BY {key} LIMIT 1)"
    late = f"COALESCE({probe.format(f'{column} >= $1')}, true)"
    return (
        "WITH RECURSIVE b(lo, hi) AS (SELECT 1::bigint, "
        f"(SELECT COALESCE(max({key}), 0) + 1 FROM {table})::bigint "
        f"UNION ALL SELECT CASE WHEN {late} THEN lo ELSE LEAST({probe.format(key)} + 1, hi) END, "
        f"CASE WHEN {late} THEN (lo + hi) / 2 ELSE hi END FROM b WHERE lo < hi) "
        "SELECT lo FROM b WHERE lo >= hi",
        [at],
    )


def jobs_page(f: JobFilter, before: int | None, limit: int, span: Span = NO_SPAN) -> Query:
    """Jobs newest first (by row id, `jid`, returned last), below `before` if given,
    within `span` (the keys the time filter allows)."""
    where, params = _where(
        (
            ("provider = {}", f.provider),
            ("status = {}", f.status),
            ("strpos(job_id, {}) > 0", f.q),
            ("created_at >= {}", f.since),
            ("created_at < {}", f.until),
            ("jid < {}", before),
            ("jid >= {}", span[0]),
            ("jid < {}", span[1]),
        )
    )
    if f.conflict is not None:
        where += " AND jsonb_array_length(terminals) " + (">" if f.conflict else "<=") + " 1"
    n = len(params) + 1
    query = f"SELECT {LISTED_COLUMNS}, jid FROM jobs WHERE {where} ORDER BY jid DESC LIMIT ${n}"
    return query, [*params, limit]


# Retention (store/retention.py): a page of deliveries, then the chosen rows deleted.
PRUNE_PAGE = "SELECT id, verdict, received_at FROM deliveries WHERE id > $1 ORDER BY id LIMIT $2"
DELETE_DELIVERIES = "DELETE FROM deliveries WHERE id = ANY($1::bigint[])"
# Notification retention: a page of outbox items, then the chosen ones deleted, if still
# done. The last item stays, as on SQLite.
NOTIFICATIONS_PAGE = (
    "SELECT id, kind, status, created_at, updated_at FROM outbox "
    "WHERE id > $1 AND id < (SELECT max(id) FROM outbox) ORDER BY id LIMIT $2"
)
DELETE_NOTIFICATIONS = "DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND status = 'done'"

# Whole-job retention: a page of jobs in jid order (whether outbox work is pending for
# each); then the chosen ones, if still finished and old once locked, deleted with their
# events, deliveries and outbox items, their keys kept as tombstones.
JOBS_PAGE = (
    "SELECT jid, provider, job_id, status, created_at, updated_at, EXISTS (SELECT 1 FROM outbox o "
    "WHERE o.provider = jobs.provider AND o.job_id = jobs.job_id AND o.status = 'pending') "
    "FROM jobs WHERE jid > $1 ORDER BY jid LIMIT $2"
)
REMOVE_JOBS = """
WITH gone AS (
    DELETE FROM jobs USING unnest($1::text[], $2::text[]) AS k (provider, job_id)
    WHERE jobs.provider = k.provider AND jobs.job_id = k.job_id
      AND jobs.status IN ('succeeded', 'failed', 'cancelled') AND jobs.updated_at < $3
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.provider = jobs.provider
                      AND o.job_id = jobs.job_id AND o.status = 'pending')
    RETURNING jobs.provider, jobs.job_id
),
events_gone AS (DELETE FROM events e USING gone WHERE e.provider = gone.provider AND e.job_id = gone.job_id),
deliveries_gone AS (
    DELETE FROM deliveries d USING gone WHERE d.provider = gone.provider AND d.job_id = gone.job_id
),
outbox_gone AS (DELETE FROM outbox o USING gone WHERE o.provider = gone.provider AND o.job_id = gone.job_id),
kept AS (
    INSERT INTO removed_jobs (provider, job_id, removed_at) SELECT provider, job_id, $4 FROM gone
    ON CONFLICT (provider, job_id) DO NOTHING
)
SELECT provider, job_id FROM gone
"""

JOB_COUNTS = "SELECT provider, status, count(*) FROM jobs GROUP BY provider, status"
CONFLICTS = "SELECT provider, count(*) FROM jobs WHERE jsonb_array_length(terminals) > 1 GROUP BY provider"


def events_per_minute(first_seq: int, since: datetime) -> Query:
    """Events from `first_seq` on, counted by minute (in UTC, as `2026-12-05T22:17`)."""
    return (
        "SELECT to_char(date_trunc('minute', at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI'), count(*) "
        "FROM events WHERE seq >= $1 AND at >= $2 GROUP BY 1 ORDER BY 1",
        [first_seq, since],
    )


def outbox_page(
    status: str | None,
    sink: str | None,
    since: datetime | None,
    until: datetime | None,
    after: int,
    limit: int,
    span: Span = NO_SPAN,
) -> Query:
    where, params = _where(
        (
            ("id > {}", after),
            ("status = {}", status),
            ("sink = {}", sink),
            ("created_at >= {}", since),
            ("created_at < {}", until),
            ("id >= {}", span[0]),
            ("id < {}", span[1]),
        )
    )
    n = len(params) + 1
    return f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE {where} ORDER BY id LIMIT ${n}", [*params, limit]


def deliveries_page(provider: str | None, job_id: str | None, limit: int) -> Query:
    where, params = _where((("provider = {}", provider), ("job_id = {}", job_id)))
    n = len(params) + 1
    return f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where} ORDER BY id LIMIT ${n}", [*params, limit]


def delivery_page(f: DeliveryFilter, limit: int, span: Span = NO_SPAN) -> Query:
    """Newest first. The verdict is written into the statement (one of three words,
    checked): the partial index of rejected deliveries serves only a query that names it."""
    verdict = Verdict(f.verdict).value if f.verdict else None
    where, params = _where(
        (
            ("id < {}", f.before),
            ("provider = {}", f.provider),
            ("received_at >= {}", f.since),
            ("received_at < {}", f.until),
            ("id >= {}", span[0]),
            ("id < {}", span[1]),
        )
    )
    if verdict:
        where += f" AND verdict = '{verdict}'"
    n = len(params) + 1
    return (
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where} ORDER BY id DESC LIMIT ${n}",
        [*params, limit],
    )


def jobs_outbox(keys: Sequence[JobKey]) -> Query:
    """The outbox items of several jobs (a page of them), through the (provider, job_id) index."""
    return (
        f"SELECT {LISTED_OUTBOX.format(cast='::text')} FROM outbox "
        "WHERE (provider, job_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY id",
        [[p for p, _ in keys], [j for _, j in keys]],
    )


def count(table: str) -> str:
    return f"SELECT count(*) FROM {_known(table)}"


def dump(table: str, after: Any, limit: int) -> Query:
    """Rows of `table` (`rows.TABLES`) above key `after`, in key order; JSON as text."""
    columns = TABLES[_known(table)]
    names = [f"{name}::text" if kind == "json" else name for name, kind in columns]
    key = columns[0][0]
    if after is None:
        return f"SELECT {', '.join(names)} FROM {table} ORDER BY {key} LIMIT $1", [limit]
    return f"SELECT {', '.join(names)} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2", [after, limit]


# Where the log ends, once rows were loaded with their numbers (`jobtrail store copy`).
MOVE_TAIL = "UPDATE log_tail SET events = (SELECT COALESCE(max(seq), 0) FROM events)"

# The identity columns whose counters must move past rows loaded with their keys.
IDENTITIES = {"deliveries": "id", "jobs": "jid", "outbox": "id", "removed_jobs": "rid"}


def restart_identity(table: str) -> str:
    column = IDENTITIES[_known(table)]
    return (
        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
        f"(SELECT COALESCE(max({column}), 0) + 1 FROM {table}), false)"
    )


def _known(table: str) -> str:
    if table not in TABLES:  # table names are spliced into SQL: only ours
        raise ValueError(f"no table {table!r}")
    return table

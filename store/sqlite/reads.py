"""The SQLite store's read queries, by name: each a statement, or a function giving the
statement and its parameters where filters are optional. Values are always bound."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from jobtrail.core.intake import JobKey
from jobtrail.core.model import Status, Verdict, isoformat
from jobtrail.store.base import DeliveryFilter, JobFilter
from jobtrail.store.rows import (
    DELIVERY_COLUMNS,
    LISTED_OUTBOX,
    OUTBOX_COLUMNS,
    TABLES,
    detail_query,
    micros,
    stamp,
)
from jobtrail.store.sqlite import writes
from jobtrail.store.sqlite.writer import REMOVED

Query = tuple[str, list[Any]]

# A job's `seen` (the fingerprints of its events) is not a column (migration 8): the log's
# unique index (jid, fingerprint) holds them, read here with the job, in order. A job's
# `FROM jobs` is not aliased, for this correlated reference.
SEEN = (
    "(SELECT json_group_array(fingerprint) FROM event_log WHERE jid = jobs.jid AND fingerprint IS NOT NULL)"
)
JOB_COLUMNS = (  # as `rows.job_from` takes them
    "provider, job_id, status, progress, result_urls, error, provider_status, terminals, "
    f"params, {SEEN}, created_at, updated_at"
)
# A listing's jobs leave `seen` empty (`Store.list_jobs`): nothing that lists jobs reads
# it, and it was about half of a page's read.
LISTED_COLUMNS = JOB_COLUMNS.replace(SEEN, "'[]'")
JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE provider = ? AND job_id = ?"
POLLS = "SELECT polls, polled_at, poll_digest FROM jobs WHERE provider = ? AND job_id = ?"
OPEN_JOBS = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE provider = ? AND status IN ('{Status.QUEUED.value}', "
    f"'{Status.PROCESSING.value}') ORDER BY jid LIMIT ?"
)
OPEN_JOBS_AFTER = (
    f"SELECT {JOB_COLUMNS}, jid FROM jobs WHERE provider = ? AND status IN ('{Status.QUEUED.value}', "
    f"'{Status.PROCESSING.value}') AND jid > ? ORDER BY jid LIMIT ?"
)
# The log names its job by row id (`event_log.jid`, migration 7): an event read as the
# port gives it takes its job's key from `jobs`.
_EVENT = "e.seq, j.provider, j.job_id, e.type, e.source, e.at, e.data, e.delivery_id"
JOB_EVENTS = (
    f"SELECT {_EVENT} FROM jobs j JOIN event_log e ON e.jid = j.jid "
    "WHERE j.provider = ? AND j.job_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?"
)
EVENTS_AFTER = (
    f"SELECT {_EVENT} FROM event_log e JOIN jobs j ON j.jid = e.jid WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
)
LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM event_log"
STORED = {"events": "event_log"}  # the port's table names that are not the file's
JID = "(SELECT jid FROM jobs WHERE provider = ?1 AND job_id = ?2)"
JOB_DETAIL = detail_query(JOB_COLUMNS, OUTBOX_COLUMNS, "provider = ? AND job_id = ?")
JOB_OUTBOX = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE provider = ? AND job_id = ? ORDER BY id"
OUTBOX_ENTRY = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?"
DISABLED_SINKS = "SELECT name, reason FROM sinks WHERE disabled_at IS NOT NULL"
PING = "SELECT 1"


def _where(clauses: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """`a = ? AND b = ?` of the clauses whose value is given (None: not filtered)."""
    given = [(clause, value) for clause, value in clauses if value is not None]
    return " AND ".join(["1 = 1", *(c for c, _ in given)]), [v for _, v in given]


Span = tuple[int | None, int | None]  # keys from the first (included) to the second
NO_SPAN: Span = (None, None)


def _iso(at: datetime) -> str:
    return isoformat(at.astimezone(UTC))


# The tables whose rows are numbered as they come, by the port's name: (the table, key,
# time column, the time as stored).
TIMED: dict[str, tuple[str, str, str, Callable[[datetime], str | int]]] = {
    "jobs": ("jobs", "jid", "created_at", _iso),
    "outbox": ("outbox", "id", "created_at", stamp),
    "deliveries": ("deliveries", "id", "received_at", _iso),
    "events": ("event_log", "seq", "at", micros),
}


def first_key_at(table: str, at: datetime) -> Query:
    """The first key of `table` whose row is as late as `at` (the last key + 1 if none
    is), by bisection over the keys in one statement: a recursive query that halves
    [lo, hi) with a primary-key probe a step, about twenty steps for a million rows."""
    table, key, column, text = TIMED[table]
    probe = f"(SELECT {{}} FROM {table} WHERE {key} >= (lo + hi) / 2 ORDER BY {key} LIMIT 1)"
    late = f"coalesce({probe.format(f'{column} >= ?1')}, 1)"
    return (
        f"WITH RECURSIVE b(lo, hi) AS (SELECT 1, (SELECT coalesce(max({key}), 0) + 1 FROM {table}) "
        f"UNION ALL SELECT CASE WHEN {late} THEN lo ELSE min({probe.format(key)} + 1, hi) END, "
        f"CASE WHEN {late} THEN (lo + hi) / 2 ELSE hi END FROM b WHERE lo < hi) "
        "SELECT lo FROM b WHERE lo >= hi",
        [text(at)],
    )


def jobs_page(f: JobFilter, before: int | None, limit: int, span: Span = NO_SPAN) -> Query:
    """Jobs newest first (by row id, `jid`, returned last), below `before` if given,
    within `span` (the keys the time filter allows). A conflict is a `terminals` list of
    more than one status (a comma in its JSON), in the partial index `jobs_conflict`."""
    where, params = _where(
        (
            ("provider = ?", f.provider),
            ("status = ?", f.status),
            ("instr(job_id, ?) > 0", f.q),
            ("created_at >= ?", _iso(f.since) if f.since else None),
            ("created_at < ?", _iso(f.until) if f.until else None),
            ("jid < ?", before),
            ("jid >= ?", span[0]),
            ("jid < ?", span[1]),
        )
    )
    if f.conflict is not None:
        where += " AND terminals " + ("LIKE" if f.conflict else "NOT LIKE") + " '%,%'"
    return f"SELECT {LISTED_COLUMNS}, jid FROM jobs WHERE {where} ORDER BY jid DESC LIMIT ?", [*params, limit]


# Retention (store/retention.py): a page of deliveries, then the chosen rows deleted. The
# last delivery is left for a later walk: the writer numbers the next one after the last,
# so deleting it would hand its id out again.
PRUNE_PAGE = (
    "SELECT id, verdict, received_at FROM deliveries "
    "WHERE id > ? AND id < (SELECT MAX(id) FROM deliveries) ORDER BY id LIMIT ?"
)
DELETE_DELIVERIES = "DELETE FROM deliveries WHERE id IN ({})"
# Notification retention: a page of outbox items, then the chosen ones deleted; the last
# item stays.
NOTIFICATIONS_PAGE = (
    "SELECT id, kind, status, created_at, updated_at FROM outbox "
    "WHERE id > ? AND id < (SELECT MAX(id) FROM outbox) ORDER BY id LIMIT ?"
)
DELETE_NOTIFICATIONS = "DELETE FROM outbox WHERE id IN ({})"
OUTBOX_SPAN = "SELECT * FROM outbox WHERE id BETWEEN ? AND ? ORDER BY id"
DELETE_OUTBOX_SPAN = "DELETE FROM outbox WHERE id BETWEEN ? AND ?"
INSERT_OUTBOX_ROW = "INSERT INTO outbox VALUES ({})"

# Whole-job retention: a page of jobs in jid order (whether outbox work is pending for
# each), what of the log's end a job holds, and the job's rows deleted, its key kept.
JOBS_PAGE = (
    "SELECT jid, provider, job_id, status, created_at, updated_at, EXISTS (SELECT 1 FROM outbox o "
    "WHERE o.provider = jobs.provider AND o.job_id = jobs.job_id AND o.status = 'pending') "
    "FROM jobs WHERE jid > ? ORDER BY jid LIMIT ?"
)
JOB_ENDS = (
    f"SELECT (SELECT MAX(seq) FROM event_log WHERE jid = {JID}), "
    "(SELECT MAX(id) FROM deliveries WHERE provider = ?1 AND job_id = ?2), "
    "(SELECT MAX(id) FROM outbox WHERE provider = ?1 AND job_id = ?2)"
)
LAST_OUTBOX = "SELECT COALESCE(MAX(id), 0) FROM outbox"
REMOVE_JOB = [
    f"DELETE FROM event_log WHERE jid = {JID}",
    "DELETE FROM deliveries WHERE provider = ?1 AND job_id = ?2",
    "DELETE FROM outbox WHERE provider = ?1 AND job_id = ?2",
    "DELETE FROM jobs WHERE provider = ?1 AND job_id = ?2",
    "INSERT INTO removed_jobs (provider, job_id, removed_at) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (provider, job_id) DO NOTHING",
]

JOB_COUNTS = "SELECT provider, status, count(*) FROM jobs GROUP BY provider, status"  # the index alone
CONFLICTS = (
    "SELECT provider, count(*) FROM jobs INDEXED BY jobs_conflict WHERE terminals LIKE '%,%' "
    "GROUP BY provider"
)


def events_per_minute(first_seq: int, since: datetime) -> Query:
    """Events from `first_seq` on, counted by minute (in UTC, as `2026-12-05T22:17`):
    grouped by the minute's number (the times are `micros`), each group named after."""
    return (
        "SELECT strftime('%Y-%m-%dT%H:%M', minute * 60, 'unixepoch'), n FROM (SELECT at / 60000000 "
        "AS minute, count(*) AS n FROM event_log WHERE seq >= ? AND at >= ? GROUP BY 1) ORDER BY minute",
        [first_seq, micros(since)],
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
    """Oldest first, through `outbox_status` or `outbox_sink` when filtered (each in id
    order: no sort), within `span`."""
    where, params = _where(
        (
            ("id > ?", after),
            ("status = ?", status),
            ("sink = ?", sink),
            ("created_at >= ?", stamp(since) if since else None),
            ("created_at < ?", stamp(until) if until else None),
            ("id >= ?", span[0]),
            ("id < ?", span[1]),
        )
    )
    return f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE {where} ORDER BY id LIMIT ?", [*params, limit]


def deliveries_page(provider: str | None, job_id: str | None, limit: int) -> Query:
    where, params = _where((("provider = ?", provider), ("job_id = ?", job_id)))
    return f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where} ORDER BY id LIMIT ?", [*params, limit]


def jobs_by_key(keys: Iterable[JobKey]) -> Iterable[Query]:
    """Queries loading jobs through the (provider, job_id) unique index, 500 at a time."""
    by_provider: dict[str, list[str]] = {}
    for provider, job_id in keys:
        by_provider.setdefault(provider, []).append(job_id)
    for provider, ids in by_provider.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            yield (
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE provider = ? AND job_id IN ({marks})",
                [provider, *chunk],
            )


def removed_by_key(keys: Iterable[JobKey]) -> Query:
    """Which of these jobs retention removed (their tombstones)."""
    return REMOVED, [json.dumps([list(key) for key in keys])]


def delivery_page(f: DeliveryFilter, limit: int, span: Span = NO_SPAN) -> Query:
    """Newest first; times compare as text, written as deliveries' own are (isoformat,
    UTC). The verdict is written into the statement (one of three words, checked): the
    partial index of rejected deliveries serves only a query that names it."""
    verdict = Verdict(f.verdict).value if f.verdict else None
    where, params = _where(
        (
            ("id < ?", f.before),
            # `+`: not through deliveries_job, which would sort the provider's every
            # delivery; newest first by id, a provider's come often enough to stop soon
            ("+provider = ?", f.provider),
            ("received_at >= ?", _iso(f.since) if f.since else None),
            ("received_at < ?", _iso(f.until) if f.until else None),
            ("id >= ?", span[0]),
            ("id < ?", span[1]),
        )
    )
    if verdict:
        where += f" AND verdict = '{verdict}'"
    return f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where} ORDER BY id DESC LIMIT ?", [
        *params,
        limit,
    ]


def jobs_outbox(keys: Sequence[JobKey]) -> Query:
    """The outbox items of several jobs (a page of them), through the (provider, job_id)
    index: a join from the keys (`(provider, job_id) IN (VALUES ...)` scanned the whole
    outbox for every page of jobs)."""
    pairs = ",".join("(?, ?)" for _ in keys)
    return (
        f"WITH page(p, j) AS (VALUES {pairs}) SELECT {LISTED_OUTBOX.format(cast='')} FROM page "
        "JOIN outbox ON outbox.provider = page.p AND outbox.job_id = page.j ORDER BY outbox.id",
        [value for key in keys for value in key],
    )


def count(table: str) -> str:
    return f"SELECT count(*) FROM {STORED.get(table, _known(table))}"


# Columns of `rows.TABLES` that the file does not keep but reads from elsewhere.
DERIVED = {"jobs": {"seen": SEEN}}


def dump(table: str, after: Any, limit: int) -> Query:
    """Rows of `table` (`rows.TABLES`) above key `after`, in key order (events through
    their view, which gives each its job's key)."""
    names = [name for name, _ in TABLES[_known(table)]]
    derived = DERIVED.get(table, {})
    columns = ", ".join(derived.get(name, name) for name in names)
    where, params = ("", []) if after is None else (f"WHERE {names[0]} > ?", [after])
    return f"SELECT {columns} FROM {table} {where} ORDER BY {names[0]} LIMIT ?", [*params, limit]


def insert(table: str) -> tuple[str, list[int]]:
    """The statement loading rows of `table` (`rows.TABLES`), and the positions of the
    values it takes (not those of derived columns: a job's `seen` comes with its events)."""
    names = [name for name, _ in TABLES[_known(table)]]
    if table == "events":  # `events` is a view (migration 7)
        return writes.INSERT_EVENT, list(range(len(names)))
    kept = [n for n, name in enumerate(names) if name not in DERIVED.get(table, {})]
    columns = ", ".join(names[n] for n in kept)
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(kept))})", kept


def _known(table: str) -> str:
    if table not in TABLES:  # table names are spliced into SQL: only ours
        raise ValueError(f"no table {table!r}")
    return table

"""Turning values into rows and back; shared by the SQL backends."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from jobtrail.core.intake import AttemptRecord, JobKey, PlannedEvent
from jobtrail.core.model import Delivery, Event, Job, OutboxEntry, OutboxItem, Status, Verdict, isoformat
from jobtrail.store.base import MAX_STORED_BODY, BadCursor, ListedItem, StoredDelivery

# A job's columns as SQLite writes them (`job_row`); read back with its `seen` (`job_from`,
# store/sqlite/reads.py).
JOB_COLUMNS = (
    "provider, job_id, status, progress, result_urls, error, provider_status, terminals, "
    "params, created_at, updated_at"
)
EVENT_COLUMNS = "seq, provider, job_id, type, source, at, data, delivery_id"
DELIVERY_COLUMNS = "id, source, provider, job_id, received_at, headers, body, body_size, verdict, reason"
OUTBOX_COLUMNS = (
    "id, key, kind, provider, job_id, sink, payload, status, attempts, last_error, created_at, updated_at, "
    "next_attempt_at"
)


# The tables a whole log is made of, in the order they can be loaded (events refer to
# deliveries and jobs), each with its key (rows are dumped in key order) and its columns, a kind
# after a colon: "time" an aware datetime, "json" a decoded JSON value, "bytes"; else a
# plain int, str or None. A row in this form is the same whichever backend it came from
# (`Store.dump`, `Store.load`: `jobtrail store copy`). The first column is the key.
_TABLES = {
    "deliveries": (
        "id source provider job_id received_at:time headers:json body:bytes body_size verdict reason"
    ),
    "jobs": (
        "jid provider job_id status progress result_urls:json error provider_status terminals:json "
        "params:json seen:json created_at:time updated_at:time polls polled_at:time poll_digest"
    ),
    "events": "seq provider job_id type source at:time data:json delivery_id fingerprint",
    "outbox": (
        "id key kind provider job_id sink payload:json status attempts next_attempt_at:time "
        "lease_until:time lease_owner last_error created_at:time updated_at:time"
    ),
    "sinks": "name disabled_at:time reason updated_at:time",
    "removed_jobs": "rid provider job_id removed_at:time",
}
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    table: tuple((word.partition(":")[0], word.partition(":")[2]) for word in spec.split())
    for table, spec in _TABLES.items()
}


@functools.lru_cache(maxsize=256)
def iso(at: datetime) -> str:
    """`at.isoformat()`, remembered: a batch stamps hundreds of rows with the same time."""
    return isoformat(at)


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON (orjson: the stdlib builds a new encoder on every call)."""
    return orjson.dumps(value, default=_plain, option=orjson.OPT_SORT_KEYS).decode()


def _plain(value: Any) -> Any:
    """What orjson cannot take as is: other mappings and sequences (frozen views)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.provider,
        job.id,
        job.status._value_,  # not .value: an enum property costs more than the whole column
        job.progress,
        _frozen_json(job.result_urls),
        job.error,
        job.provider_status,
        _frozen_json(job.terminals),
        dumps(job.params) if job.params else "{}",
        iso(job.created_at),
        iso(job.updated_at),
    )


@functools.lru_cache(maxsize=4096)
def _frozen_json(value: tuple[str, ...]) -> str:
    """The JSON list of a tuple, remembered: most jobs share the same few `terminals` and
    `result_urls` values."""
    return dumps(list(value))


_STATUS = {s.value: s for s in Status}  # a dict lookup is a fraction of `Status(value)`


@functools.lru_cache(maxsize=4096)
def _terminals(text: str) -> tuple[Status, ...]:
    """A job's stored `terminals`, remembered: jobs share a few values (as `_frozen_json`)."""
    return tuple(_STATUS[s] for s in orjson.loads(text))


@functools.lru_cache(maxsize=4096)
def _seen(text: str) -> frozenset[str]:
    return frozenset(orjson.loads(text))


def job_from(row: Sequence[Any]) -> Job:
    # Positional, in `Job`'s field order: a keyword costs ~60 ns a field more, and a page
    # of a listing makes hundreds of these (bench/scale).
    return Job(
        row[0],  # provider
        row[1],  # id
        time_from(row[10]),  # created_at
        time_from(row[11]),  # updated_at
        _STATUS[row[2]],
        row[3],  # progress
        tuple(orjson.loads(row[4])),  # result_urls
        row[5],  # error
        row[6],  # provider_status
        _terminals(row[7]),
        orjson.loads(row[8]),  # params
        _seen(row[9]),
    )


def event_row(event: PlannedEvent, at: int) -> tuple[Any, ...]:
    """A planned event for the SQLite writer, which numbers it: (provider, job_id, type,
    source, at (`micros`), data, delivery position, fingerprint, attempt position)."""
    return (
        event.provider,
        event.job_id,
        event.type,
        event.source,
        at,
        dumps(event.data),
        event.delivery,
        event.fingerprint,
        event.attempt,
    )


def event_from(row: Sequence[Any]) -> Event:
    return Event(
        seq=row[0],
        provider=row[1],
        job_id=row[2],
        type=row[3],
        source=row[4],
        at=time_from(row[5]),
        data=orjson.loads(row[6]),
        delivery_id=row[7],
    )


def delivery_row(delivery: Delivery, verdict: Verdict, reason: str | None) -> tuple[Any, ...]:
    """A delivery's columns but its id (the writer numbers it)."""
    return (
        delivery.source,
        delivery.provider,
        delivery.job_id,
        isoformat(delivery.received_at),  # not iso(): each delivery's time is its own
        dumps(delivery.headers),
        bytes(delivery.body[:MAX_STORED_BODY]),
        len(delivery.body),
        verdict._value_,
        reason,
    )


def delivery_from(row: Sequence[Any]) -> StoredDelivery:
    delivery = Delivery(
        source=row[1],
        provider=row[2],
        job_id=row[3],
        received_at=time_from(row[4]),
        headers=orjson.loads(row[5]),
        body=bytes(row[6]),
    )
    return StoredDelivery(row[0], delivery, Verdict(row[8]), row[9], row[7])


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """A time as SQLite's event log keeps it (its migration 8): microseconds since 1970,
    UTC, an 8-byte integer where the ISO text takes 32."""
    return (at - EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=256)
def stamp(at: datetime) -> str:
    """Outbox times: UTC with microseconds always, so they compare correctly as text."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def outbox_row(item: OutboxItem, now: datetime) -> tuple[Any, ...]:
    now_text = stamp(now)
    return (
        item.key,
        item.kind,
        item.provider,
        item.job_id,
        item.sink,
        dumps(item.payload),
        item.status,
        now_text,
        now_text,
        now_text,
    )


def attempt_row(record: AttemptRecord, now: datetime) -> tuple[Any, ...]:
    """`UPDATE outbox SET status, attempts, next_attempt_at, last_error, payload, updated_at
    WHERE id` (and the lease it must hold); the lease is released."""
    return (
        record.status,
        record.attempts,
        stamp(record.next_attempt_at),
        record.last_error,
        None if record.payload is None else dumps(record.payload),
        stamp(now),
        record.entry_id,
    )


def outbox_from(row: Sequence[Any]) -> OutboxEntry:
    # Positional (key, kind, provider, job_id, sink, payload), as `job_from`.
    item = OutboxItem(row[1], row[2], row[3], row[4], row[5], orjson.loads(row[6]))
    return OutboxEntry(
        row[0], item, row[7], row[8], row[9], time_from(row[10]), time_from(row[11]), time_from(row[12])
    )


def detail_query(job_columns: str, outbox_columns: str, key: str) -> str:
    """`JOB_DETAIL` in a dialect (store/*/reads.py): a job (`key`: its WHERE), its polls
    and its outbox items, a row per item (one with NULLs for none), in one statement
    (sql_reads.py: DETAIL_POLLS, DETAIL_OUTBOX)."""
    items = ", ".join(f"o.{column.strip()}" for column in outbox_columns.split(","))
    return (
        f"SELECT j.*, {items} FROM "
        f"(SELECT {job_columns}, polls, polled_at, poll_digest FROM jobs WHERE {key}) j "
        "LEFT JOIN outbox o ON o.provider = j.provider AND o.job_id = j.job_id ORDER BY o.id"
    )


# `jobs_outbox`'s columns (store/*/reads.py): the item's job, then `ListedItem`'s, the
# payload only for a download.
LISTED_OUTBOX = (
    "outbox.provider, outbox.job_id, outbox.kind, outbox.sink, outbox.status, outbox.attempts, "
    "outbox.last_error, CASE outbox.kind WHEN 'download' THEN outbox.payload{cast} END"
)


def listed_from(row: Sequence[Any]) -> tuple[JobKey, ListedItem]:
    payload = row[7]
    return (row[0], row[1]), ListedItem(
        row[2], row[3], row[4], row[5], row[6], None if payload is None else orjson.loads(payload)
    )


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"j{position}".encode()).decode().rstrip("=")


_CURSOR = re.compile(r"j([0-9]{1,18})")


def decode_cursor(cursor: str) -> int:
    """The position a cursor from `encode_cursor` holds; anything else is `BadCursor`
    (a number too large for a database integer included)."""
    try:
        match = _CURSOR.fullmatch(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        match = None
    if match is None:
        raise BadCursor("cursor is not one this API handed out")
    return int(match.group(1))


def time_from(value: Any) -> datetime:
    """A stored time: SQLite gives it as ISO text (as `micros` in its event log),
    PostgreSQL as a datetime."""
    kind = type(value)  # the most frequent first: a listing page makes hundreds
    if kind is str:
        return datetime.fromisoformat(value)
    if kind is int:
        return EPOCH + timedelta(microseconds=value)
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def neutral(table: str, row: Sequence[Any]) -> tuple[Any, ...]:
    """A stored row as `TABLES` describes it (SQLite gives times as text, PostgreSQL as
    datetimes; both give JSON as text)."""
    return tuple(
        None
        if value is None
        else time_from(value)
        if kind == "time"
        else orjson.loads(value)
        if kind == "json"
        else bytes(value)
        if kind == "bytes"
        else value
        for (_, kind), value in zip(TABLES[table], row, strict=True)
    )


def text_row(table: str, row: Sequence[Any]) -> tuple[Any, ...]:
    """A neutral row as SQLite stores it: times as text (the outbox's and sinks' always
    with microseconds, since they are compared as text; the events' as `micros`), JSON
    as text."""
    clocks: dict[str, Callable[[datetime], str | int]] = {"outbox": stamp, "sinks": stamp, "events": micros}
    clock = clocks.get(table, isoformat)
    return tuple(
        None
        if value is None
        else clock(value)
        if kind == "time"
        else dumps(value)
        if kind == "json"
        else value
        for (_, kind), value in zip(TABLES[table], row, strict=True)
    )


def canonical(row: Sequence[Any]) -> bytes:
    """One neutral row as bytes that do not depend on the backend: for the checksum of
    a copy."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(timespec="microseconds")
        if isinstance(value, bytes):
            return value.hex()
        return value

    return orjson.dumps([plain(v) for v in row], option=orjson.OPT_SORT_KEYS) + b"\n"

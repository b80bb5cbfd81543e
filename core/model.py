"""The values everything else passes around: statuses, observations, events, jobs.

All are frozen; change them with `dataclasses.replace`. Nothing here does I/O. Their
`__init__` comes from `core.frozen.fast_init`: intake builds several per delivery.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from jobtrail.core.frozen import fast_init

PROVIDERS: tuple[str, ...] = ("pixazo", "apiframe", "oxen", "venice")


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(at: datetime) -> str:
    """Exactly `at.isoformat()`, about 2.5 times as fast for UTC times: orjson writes an
    aware datetime as `isoformat` does (fraction left out when it is zero), in C without
    `datetime.isoformat`'s `sprintf` per field. Intake formats two times per delivery, a
    page of a listing two or three per row. Any other time (another offset, a year before
    1000) goes through `isoformat` itself. tests/unit/test_isoformat.py checks it is the same."""
    if at.tzinfo is not UTC or at.year < 1000:
        return at.isoformat()
    return orjson.dumps(at)[1:-1].decode()


_RANKS = {"queued": 0, "processing": 1, "succeeded": 2, "failed": 2, "cancelled": 2}


class Status(enum.StrEnum):
    """A job's normalized status. Ranks only ever go up; the last three are terminal."""

    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # Plain attributes, set once per member: a property looking the member up in a dict
    # would hash it through Enum.__hash__, a Python call, on intake's hot path.
    rank: int
    terminal: bool

    def __init__(self, value: str) -> None:
        self.rank = _RANKS[value]
        self.terminal = self.rank == 2


_BY_VALUE = {status.value: status for status in Status}


class Verdict(enum.StrEnum):
    """What intake made of one raw delivery."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@fast_init
@dataclass(frozen=True, slots=True)
class Observation:
    """One normalized fact a source reported about a job.

    `kind` is a status value (`queued` ... `cancelled`), `tracked` (a user asked us to
    follow the job) or `missing` (the provider said it does not know the job).
    `provider_status` keeps the provider's own word (e.g. Pixazo `ERROR`). `file` is set
    when the observation came with the result itself, already on disk (Venice): its
    `path`, `bytes` and `sha256`.
    """

    provider: str
    job_id: str
    kind: str
    progress: int | None = None
    result_urls: tuple[str, ...] = ()
    error: str | None = None
    provider_status: str | None = None
    provider_at: datetime | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    file: Mapping[str, Any] | None = None

    @property
    def status(self) -> Status | None:
        return _BY_VALUE.get(self.kind)


@fast_init
@dataclass(frozen=True, slots=True)
class Delivery:
    """One raw inbound delivery as received, secrets already removed from `headers`."""

    source: str
    provider: str
    received_at: datetime
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    job_id: str | None = None


class NewEvent(NamedTuple):
    """An event decided by the state machine, before the store gives it a sequence number."""

    provider: str
    job_id: str
    type: str
    data: Mapping[str, Any]
    fingerprint: str | None


@fast_init
@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only log."""

    seq: int
    provider: str
    job_id: str
    type: str
    source: str
    at: datetime
    data: Mapping[str, Any]
    delivery_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "provider": self.provider,
            "job_id": self.job_id,
            "type": self.type,
            "source": self.source,
            "at": isoformat(self.at),
            "data": dict(self.data),
        }


@fast_init
@dataclass(frozen=True, slots=True)
class Job:
    """The projection of one job: everything the log has said about it, folded.

    `seen` holds the fingerprints of observations already logged (the dedup memory);
    `terminals` every distinct terminal status reported, so more than one is a conflict.
    """

    provider: str
    id: str
    created_at: datetime
    updated_at: datetime
    status: Status = Status.QUEUED
    progress: int | None = None
    result_urls: tuple[str, ...] = ()
    error: str | None = None
    provider_status: str | None = None
    terminals: tuple[Status, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    seen: frozenset[str] = frozenset()

    @property
    def conflict(self) -> bool:
        return len(self.terminals) > 1


@fast_init
@dataclass(frozen=True, slots=True)
class OutboxItem:
    """Work a transition calls for (a download, a notification), keyed for idempotency."""

    key: str
    kind: str
    provider: str
    job_id: str
    sink: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    status: str = "pending"


@fast_init
@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An outbox item as stored, with its progress."""

    id: int
    item: OutboxItem
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What one intake committed: the delivery's id and verdict, new events, the job after."""

    delivery_id: int
    verdict: Verdict
    events: tuple[Event, ...]
    job: Job | None

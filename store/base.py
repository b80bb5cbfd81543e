"""The store port: what every backend (memory, SQLite, PostgreSQL) promises.

A backend keeps four things: the raw deliveries (audit), the append-only event log, the
job projection, and the outbox. `intake` writes all four for one delivery in one
transaction and returns only after the commit; that is what lets the receiver answer 2xx.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from core.intake import AttemptRecord, IntakeRequest, Plan, Planner
from core.model import Delivery, Event, IntakeResult, Job, Observation, OutboxEntry, Verdict

MAX_STORED_BODY = 64 * 1024


class StoreError(Exception):
    """The store cannot do what was asked (unreachable, corrupt, misconfigured)."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer jobtrail than this one."""


class BadCursor(StoreError, ValueError):
    """A pagination cursor this store did not hand out."""


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: int
    delivery: Delivery
    verdict: Verdict
    reason: str | None
    body_size: int


class Claim(NamedTuple):
    """Take up to `limit` due items of `kind`, leased until `lease_until`.

    Due: `pending`, `next_attempt_at` passed, no live lease, its sink not disabled, and,
    with `wait_for_downloads`, not a success notification whose job still has a pending
    download (it should say where the file is).
    """

    kind: str
    now: datetime
    lease_until: datetime
    limit: int
    wait_for_downloads: bool = True


@dataclass(frozen=True, slots=True)
class Page:
    jobs: Sequence[Job]
    next_cursor: str | None


class _Signal:
    """Wakes everyone waiting at the moment it fires; costs nothing when no one waits."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self.fired = 0

    def fire(self) -> None:
        self.fired += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, seconds: float) -> bool:
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            async with asyncio.timeout(seconds):  # not wait_for: it can swallow a cancel on 3.11
                await event.wait()
        except TimeoutError:
            return False
        return True


class Store(abc.ABC):
    """One event log with its projections. Open before use; close when done."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self._appended = _Signal()
        self._outbox_changed = _Signal()

    def _committed(self, plan: Plan) -> None:
        """Wake the waiters a committed plan concerns (backends call this after a commit)."""
        if plan.events:
            self._appended.fire()
        if plan.outbox or plan.attempts:
            self._outbox_changed.fire()

    async def wait_for_append(self, seconds: float) -> bool:
        """Wait until events are appended by this process, or `seconds` pass; True if woken."""
        return await self._appended.wait(seconds)

    @property
    def outbox_changes(self) -> int:
        """How often this process has added outbox work or recorded an attempt."""
        return self._outbox_changed.fired

    async def wait_for_outbox(self, seconds: float) -> bool:
        """Wait until this process adds outbox work or records an attempt, or `seconds`
        pass; True if woken. (Intake that queues no work wakes no one.)"""
        return await self._outbox_changed.wait(seconds)

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations; refuse a schema newer than the code."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending intakes, then release connections."""

    @abc.abstractmethod
    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        """Record the delivery, append its new events, update jobs, enqueue outbox work:
        all in one transaction, committed before returning. Duplicates append nothing and
        the delivery is kept with verdict `duplicate`."""

    async def intake_many(self, requests: Sequence[IntakeRequest]) -> list[IntakeResult]:
        """Several intakes (or rejections) in order, each its own delivery, committed
        together where the backend can. A request that fails raises after the others
        are settled; those are committed."""
        results = []
        for request in requests:
            if request.rejection is not None:
                delivery_id = await self.reject(request.delivery, request.rejection)
                results.append(IntakeResult(delivery_id, Verdict.REJECTED, (), None))
            else:
                results.append(await self.intake(request.delivery, request.observations))
        return results

    @abc.abstractmethod
    async def claim(self, claim: Claim) -> list[OutboxEntry]:
        """Lease due outbox work (see `Claim`), oldest due first. A leased item is not
        claimed again until its lease ends: a slow attempt never runs twice at once."""

    @abc.abstractmethod
    async def has_due(self, claim: Claim) -> bool:
        """Whether `claim` would take anything (a read: no lease, no write)."""

    @abc.abstractmethod
    async def release_leases(self) -> int:
        """Drop every lease (at start-up: a lease held by a process that died would
        otherwise hold its work until it ends). Returns how many were released."""

    @abc.abstractmethod
    async def record_attempt(self, record: AttemptRecord) -> Event | None:
        """Store an attempt's outcome and its `dispatch` event in one transaction, after
        everything submitted before it; release the lease. Returns the event."""

    @abc.abstractmethod
    async def outbox(
        self,
        *,
        status: str | None = None,
        sink: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        after: int = 0,
    ) -> list[OutboxEntry]:
        """Outbox items with an id above `after`, oldest first, filtered by status, sink
        and creation time (page on with the last id seen)."""

    @abc.abstractmethod
    async def outbox_entry(self, entry_id: int) -> OutboxEntry | None:
        """One outbox item, or None."""

    @abc.abstractmethod
    async def disabled_sinks(self) -> dict[str, str]:
        """Sinks switched off (by a 410), with the reason."""

    @abc.abstractmethod
    async def reject(self, delivery: Delivery, reason: str) -> int:
        """Keep a refused delivery for audit (verdict `rejected`); returns its id."""

    @abc.abstractmethod
    async def get_job(self, provider: str, job_id: str) -> Job | None:
        """The job's projection, or None."""

    @abc.abstractmethod
    async def list_jobs(
        self,
        *,
        provider: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Jobs newest first; `cursor` from a previous page continues after it."""

    @abc.abstractmethod
    async def open_jobs(self, provider: str, limit: int = 100_000) -> list[Job]:
        """The provider's jobs that are not terminal yet (the ones to poll), oldest first."""

    @abc.abstractmethod
    async def job_events(
        self, provider: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """One job's events in sequence order, after sequence number `after`."""

    @abc.abstractmethod
    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        """All events with a sequence number above `seq`, in order."""

    @abc.abstractmethod
    async def outbox_for_job(self, provider: str, job_id: str) -> list[OutboxEntry]:
        """The job's outbox work (downloads, notifications) with its state."""

    @abc.abstractmethod
    async def deliveries(
        self, *, provider: str | None = None, job_id: str | None = None, limit: int = 1000
    ) -> list[StoredDelivery]:
        """Raw deliveries, oldest first, optionally of one job."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""

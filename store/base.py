"""The store port: what every backend (memory, SQLite, PostgreSQL) promises.

A backend keeps four things: the raw deliveries (audit), the append-only event log, the
job projection, and the outbox. `intake` writes all four for one delivery in one
transaction and returns only after the commit; that is what lets the receiver answer 2xx.

Nothing here assumes one process: the backend numbers deliveries and events as it
commits them (`core.intake.settle`), decides whether an attempt record still holds its
lease, and fires the wake-ups (`wait_for_append`, `wait_for_outbox`) for every write it
hears of, its own or, where it can, another process's.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.core.intake import AttemptRecord, IntakeRequest, JobKey, Planner, Refused
from jobtrail.core.model import Delivery, Event, IntakeResult, Job, Observation, OutboxEntry, Verdict
from jobtrail.store.retention import Pruned, Removal, Sweep

MAX_STORED_BODY = 64 * 1024


class StoreError(Exception):
    """The store cannot do what was asked (unreachable, corrupt, misconfigured)."""


class StoreUnavailable(StoreError):
    """The store cannot take this write now; nothing acknowledged is lost, try again
    after `retry_after` seconds. A write that raises this may or may not have landed
    (its writer died, or did not answer in time): a retry is deduplicated."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OutcomeUnknown(StoreUnavailable):
    """The write was sent and its writer went away before answering: it may have been
    committed or not. Not retried by the store (a retry would be planned on a guess);
    the caller's retry is deduplicated."""


class StoreBusy(StoreUnavailable):
    """Too many writes are waiting already (backpressure); this one was not taken."""


class StoreClosed(StoreUnavailable):
    """The store is not open (not yet, or no longer)."""


class StoreLocked(StoreError):
    """Another server already runs on this store, and the backend allows only one."""


class LeaseLost(StoreError):
    """An attempt record from a process that no longer holds the item's lease (or a
    replay of an item that is pending again): refused, nothing written."""

    def __init__(self, refused: Refused) -> None:
        who = f"owner {refused.owner}" if refused.owner else "a replay"
        super().__init__(f"outbox item {refused.entry_id} is not held by {who}: the record was refused")
        self.entry_id = refused.entry_id


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


class DeliveryFilter(NamedTuple):
    """Which deliveries to list: each given value must match (None: any)."""

    verdict: str | None = None
    provider: str | None = None
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    before: int | None = None  # ids below this one (the page before's last)


class JobFilter(NamedTuple):
    """Which jobs to list: each given value must match (None: any)."""

    provider: str | None = None
    status: str | None = None
    q: str | None = None  # a part of the job's id (case-sensitive)
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    conflict: bool | None = None  # True: only jobs whose sources disagree; False: none of them

    def matches(self, job: Job) -> bool:
        """The filter in Python, as the SQL backends apply it (the memory store's)."""
        return (
            (self.provider is None or job.provider == self.provider)
            and (self.status is None or job.status.value == self.status)
            and (self.q is None or self.q in job.id)
            and (self.since is None or job.created_at >= self.since)
            and (self.until is None or job.created_at < self.until)
            and (self.conflict is None or job.conflict == self.conflict)
        )


class Claim(NamedTuple):
    """Take up to `limit` due items of `kind`, leased to `owner` until `lease_until`.

    Due: `pending`, `next_attempt_at` passed, no live lease, its sink not disabled, and,
    with `wait_for_downloads`, not a success notification whose job still has a pending
    download (it should say where the file is).
    """

    kind: str
    now: datetime
    lease_until: datetime
    limit: int
    owner: str
    wait_for_downloads: bool = True


@dataclass(frozen=True, slots=True)
class Page:
    jobs: Sequence[Job]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Gauges:
    """What `/metrics` shows of the store's contents: outbox items not done, by (kind,
    sink, status), and jobs not terminal yet, by provider."""

    outbox: Mapping[tuple[str, str, str], int]
    open_jobs: Mapping[str, int]


class ListedItem(NamedTuple):
    """An outbox item as a listing of jobs shows it (`Store.outbox_for_jobs`): its state
    without times, and a payload only for a download (url, path, bytes, sha256). A
    notification's payload is its job over again, which no listing shows: leaving it
    and the times unread took ~60% off a page's outbox work (20,000 jobs, 50 a page)."""

    kind: str
    sink: str
    status: str
    attempts: int
    last_error: str | None
    payload: Mapping[str, Any] | None

    @classmethod
    def of(cls, entry: OutboxEntry) -> ListedItem:
        item = entry.item
        payload = item.payload if item.kind == "download" else None
        return cls(item.kind, item.sink, entry.status, entry.attempts, entry.last_error, payload)


class Polls(NamedTuple):
    """A job's polls (`Store.record_polls`, `Store.polls`): how many answers, when the
    last came, and a digest of its body. `answers` is written as an increment, read as
    the total."""

    provider: str
    job_id: str
    answers: int
    last_at: datetime
    last_digest: str


class JobDetail(NamedTuple):
    """One job as `GET /api/jobs/{provider}/{id}` shows it (`Store.job_detail`)."""

    job: Job
    outbox: list[OutboxEntry]
    polls: Polls | None


def merged(polls: Iterable[Polls]) -> list[Polls]:
    """One record per job: answers added up, the latest answer's time and digest."""
    by_job: dict[tuple[str, str], Polls] = {}
    for record in polls:
        key = (record.provider, record.job_id)
        seen = by_job.get(key)
        if seen is not None:
            latest = record if record.last_at >= seen.last_at else seen
            record = latest._replace(answers=seen.answers + record.answers)
        by_job[key] = record
    return list(by_job.values())


@dataclass(frozen=True, slots=True)
class JobCounts:
    """How many jobs the store holds, by (provider, status), and how many of them have a
    conflict, by provider (the console's overview)."""

    by_status: Mapping[tuple[str, str], int]
    conflicts: Mapping[str, int]


CommitObserver = Callable[[float, int], None]  # (seconds a group commit took, requests in it)
# (which round trip to the database, seconds it took): PostgreSQL's "read" of a batch's
# jobs and its "write" (the message that writes, appends and commits).
RoundTripObserver = Callable[[str, float], None]


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

    kind = "store"  # what /readyz calls the backend: memory, sqlite, postgres
    # Whether reads gain from being gathered: PostgreSQL's wait on a network, each on a
    # pooled connection. SQLite's are microseconds on the event loop, and gathering them
    # costs each a trip through the loop's queue, behind whatever else is waiting there:
    # a job lookup beside three clients on list pages, p50 4.4 -> 2.7 ms read in turn.
    parallel_reads = False

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self._appended = _Signal()
        self._outbox_changed = _Signal()
        self.events_appended = 0  # events this process appended (its commits, not others')
        # Batches of intakes planned again because a job changed between their read and
        # their write (PostgreSQL: replicas, or this one's batches in flight, writing the
        # same jobs at once); the other backends plan where nothing else writes.
        self.plans_changed = 0
        self.commit_observer: CommitObserver | None = None
        self.round_trip_observer: RoundTripObserver | None = None

    def _heard(self, *, appended: bool, outbox: bool) -> None:
        """Wake the waiters for a write the backend committed or heard of (backends call
        this; a backend shared by several processes calls it for theirs too)."""
        if appended:
            self._appended.fire()
        if outbox:
            self._outbox_changed.fire()

    @property
    def appends(self) -> int:
        """How often appends were heard, as `wait_for_append` counts them: read it before
        a query, and a wait after the query returns at once if it moved on meanwhile."""
        return self._appended.fired

    async def wait_for_append(self, seconds: float, since: int | None = None) -> bool:
        """Wait until events are appended, or `seconds` pass; True if woken. Every append
        this process makes wakes it; another process's, where the backend hears of it.
        `since`: `appends` as read before the caller last looked; if it moved on since,
        True at once (an append that landed between the look and the wait is not missed)."""
        if since is not None and self._appended.fired != since:
            return True
        return await self._appended.wait(seconds)

    @property
    def outbox_changes(self) -> int:
        """How often outbox work was added or an attempt recorded, as `wait_for_outbox`
        counts it."""
        return self._outbox_changed.fired

    async def wait_for_outbox(self, seconds: float) -> bool:
        """Wait until outbox work is added or an attempt recorded, or `seconds` pass;
        True if woken. (Intake that queues no work wakes no one.)"""
        return await self._outbox_changed.wait(seconds)

    @abc.abstractmethod
    async def open(self, *, exclusive: bool = False) -> None:
        """Connect and apply pending migrations; refuse a schema newer than the code.
        `exclusive`: this process serves the store (`jobtrail serve`); where the backend
        allows only one server (SQLite), a second raises `StoreLocked`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending intakes, then release connections."""

    @abc.abstractmethod
    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        """Record the delivery, append its new events, update jobs, enqueue outbox work:
        all in one transaction, committed before returning. Duplicates append nothing and
        the delivery is kept with verdict `duplicate`. `StoreUnavailable` when it cannot
        be taken now (retry: a write that landed anyway is deduplicated)."""

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
        """Lease due outbox work to `claim.owner` (see `Claim`), oldest due first. A
        leased item is not claimed again, by anyone, until its lease ends."""

    @abc.abstractmethod
    async def has_due(self, claim: Claim) -> bool:
        """Whether `claim` would take anything (a read: no lease, no write)."""

    @abc.abstractmethod
    async def renew(self, owner: str, entry_ids: Collection[int], until: datetime) -> list[int]:
        """Extend `owner`'s leases on these items to `until`; the ids it still holds. (A
        worker renews while its attempts run, so a lease can be short: the work of a
        process that died is free again soon after.)"""

    @abc.abstractmethod
    async def release(self, owner: str) -> int:
        """Drop every lease `owner` holds (a worker stopping cleanly); how many. Another
        owner's leases are never touched: they expire."""

    @abc.abstractmethod
    async def record_attempt(self, record: AttemptRecord) -> Event | None:
        """Store an attempt's outcome and its `dispatch` event in one transaction, after
        everything submitted before it; release the lease. Returns the event.
        `LeaseLost` when the record's owner no longer holds the item's lease (for a
        replay, `owner` None: when the item is pending), and nothing is written."""

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
        q: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        conflict: bool | None = None,
    ) -> Page:
        """Jobs newest first, filtered as `JobFilter` says; `cursor` from a previous page
        continues after it. A listed job's `seen` (the dedup memory) is left empty: no
        listing shows it, and reading it cost SQLite about half of a page's read; the
        planner and the poller read jobs whole (`get_job`, `open_jobs`)."""

    @abc.abstractmethod
    async def job_counts(self) -> JobCounts:
        """Every job counted by provider and status, and the conflicts among them."""

    @abc.abstractmethod
    async def events_per_minute(self, since: datetime) -> list[tuple[datetime, int]]:
        """How many events the log took in each minute from `since` on (UTC, minutes with
        none left out), oldest first."""

    @abc.abstractmethod
    async def open_jobs(self, provider: str, limit: int = 100_000) -> list[Job]:
        """The provider's jobs that are not terminal yet (the ones to poll), oldest first."""

    @abc.abstractmethod
    async def open_jobs_after(self, provider: str, after: int, limit: int = 10_000) -> tuple[list[Job], int]:
        """The provider's open jobs stored after key `after` (0: from the first), oldest
        first, at most `limit`, and the key to go on after (`after` if none): a poller
        reads all once, then only the jobs that came since."""

    @abc.abstractmethod
    async def job_events(
        self, provider: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """One job's events in sequence order, after sequence number `after`."""

    @abc.abstractmethod
    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        """All events with a sequence number above `seq`, in order."""

    @abc.abstractmethod
    async def last_seq(self) -> int:
        """The highest sequence number in the log, 0 when it is empty. Every event up to it
        is committed and visible: a reader that starts after it misses nothing."""

    @abc.abstractmethod
    async def outbox_for_job(self, provider: str, job_id: str) -> list[OutboxEntry]:
        """The job's outbox work (downloads, notifications) with its state."""

    @abc.abstractmethod
    async def outbox_for_jobs(self, keys: Sequence[JobKey]) -> dict[JobKey, list[ListedItem]]:
        """`outbox_for_job` for a page of jobs in one read (at most a few hundred keys), as
        a listing shows it (`ListedItem`): every key given, with its items in id order
        (none: an empty list)."""

    @abc.abstractmethod
    async def deliveries(
        self, *, provider: str | None = None, job_id: str | None = None, limit: int = 1000
    ) -> list[StoredDelivery]:
        """Raw deliveries, oldest first, optionally of one job."""

    @abc.abstractmethod
    async def delivery_page(self, filters: DeliveryFilter, limit: int = 50) -> list[StoredDelivery]:
        """Raw deliveries newest first, as `filters` says (page on with `before`: the last
        id seen)."""

    @abc.abstractmethod
    async def delivery(self, delivery_id: int) -> StoredDelivery | None:
        """One raw delivery, or None."""

    @abc.abstractmethod
    async def prune_deliveries(
        self, after: int, raw_before: datetime, rejected_before: datetime, page: int = 500
    ) -> Pruned:
        """Retention over one page of deliveries after id `after`, in one short
        transaction (store/retention.py says what happens to each)."""

    @abc.abstractmethod
    async def prune_notifications(self, after: int, before: datetime, page: int = 500) -> Sweep:
        """Notification retention over one page of outbox items after id `after`, in one
        short transaction: the notifications `retention.choose_notifications` picks (done
        before `before`) are deleted. The item with the highest id stays, as the last
        delivery does: its id would be handed out again."""

    @abc.abstractmethod
    async def remove_jobs(self, after: int, before: datetime, page: int = 500) -> Removal:
        """Whole-job retention over one page of jobs after jid `after`, in one short
        transaction: the jobs `retention.choose_jobs` picks go, with their events,
        deliveries and outbox items, and each leaves a tombstone, so that a later report
        about it is refused (`retention.REMOVED`) rather than starting it again. Safe
        beside intake: a job a report changes meanwhile is no longer old, and stays."""

    @abc.abstractmethod
    async def record_polls(self, polls: Sequence[Polls]) -> int:
        """Add each record's answers to its job's poll count, and set its last poll time and
        reply digest, in one short transaction; a job not stored (or removed) is skipped.
        How many jobs were updated. The poller's answers that said nothing new are kept
        only this way."""

    @abc.abstractmethod
    async def polls(self, provider: str, job_id: str) -> Polls | None:
        """The job's polls so far, or None (never polled, or not stored)."""

    async def job_detail(self, provider: str, job_id: str) -> JobDetail | None:
        """The job with its outbox work and its polls, or None. The SQL backends read
        them in one statement (a lookup on PostgreSQL was three round trips, two of them
        at once)."""
        job = await self.get_job(provider, job_id)
        return None if job is None else await self.detail_of(job)

    async def detail_of(self, job: Job) -> JobDetail:
        """`job` (just written, say) with its outbox work and polls: read at once where
        reads wait on a network (`parallel_reads`), else one after the other."""
        if self.parallel_reads:
            outbox, polls = await asyncio.gather(
                self.outbox_for_job(job.provider, job.id), self.polls(job.provider, job.id)
            )
        else:
            outbox = await self.outbox_for_job(job.provider, job.id)
            polls = await self.polls(job.provider, job.id)
        return JobDetail(job, outbox, polls)

    @abc.abstractmethod
    async def gauges(self) -> Gauges:
        """Outbox depth and open jobs, counted now (for `/metrics`)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""

    async def count(self, table: str) -> int:
        """How many rows `table` (one of `rows.TABLES`) holds."""
        raise StoreError(f"a {self.kind} store cannot be copied")

    async def dump(self, table: str, after: Any, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` rows of `table` whose key (its first column) is above `after`
        (None: from the first), in key order, in the form `rows.TABLES` describes: the
        same from every backend."""
        raise StoreError(f"a {self.kind} store cannot be copied")

    async def load(self, table: str, batch: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows as `dump` gives them, keys and all, in one transaction; for a
        store nobody serves (`jobtrail store copy`)."""
        raise StoreError(f"a {self.kind} store cannot be copied into")

    async def lead(self, name: str, owner: str, ttl: float) -> bool:
        """Take or keep the lease on `name` (a singleton's: the listeners) for `owner`,
        for `ttl` seconds; True while `owner` holds it. A backend that serves one process
        (memory, SQLite: one server per file) grants it always."""
        return True

    async def resign(self, name: str, owner: str) -> None:  # noqa: B027 - a no-op by default
        """Give the lease on `name` up, if `owner` holds it (a clean stop: another replica
        takes over at once instead of after the lease)."""

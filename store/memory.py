"""An in-process backend for fast tests: the same behaviour, kept in dicts and lists."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from jobtrail.core.intake import (
    AttemptRecord,
    IntakeRequest,
    JobKey,
    Planner,
    Refused,
    Result,
    WriteRequest,
    plan_batch,
    settle,
)
from jobtrail.core.model import (
    Delivery,
    Event,
    IntakeResult,
    Job,
    Observation,
    OutboxEntry,
    Status,
    utcnow,
)
from jobtrail.store import retention, rows
from jobtrail.store.base import (
    MAX_STORED_BODY,
    Claim,
    DeliveryFilter,
    Gauges,
    JobCounts,
    JobFilter,
    LeaseLost,
    ListedItem,
    Page,
    Polls,
    Store,
    StoreClosed,
    StoredDelivery,
    StoreError,
    merged,
)
from jobtrail.store.retention import Pruned, Removal, Sweep


class MemoryStore(Store):
    kind = "memory"

    def __init__(self, planner: Planner) -> None:
        super().__init__(planner)
        self._open = False
        self._lock = asyncio.Lock()
        self._deliveries: list[StoredDelivery] = []
        self._gone: set[int] = set()  # deliveries deleted by retention (ids stay positions)
        self._events: list[Event] = []
        self._gone_events: set[int] = set()  # events of jobs removed by retention (seqs stay positions)
        self._removed: set[JobKey] = set()  # tombstones of the jobs removed
        self._polls: dict[JobKey, Polls] = {}
        self._last_jid = self._last_outbox = 0
        self._fingerprints: set[tuple[str, str, str]] = set()
        self._jobs: dict[JobKey, tuple[int, Job]] = {}
        self._outbox: dict[str, OutboxEntry] = {}
        self._by_id: dict[int, str] = {}
        self._leases: dict[int, tuple[str, datetime]] = {}  # entry id: (owner, until)
        self._disabled: dict[str, str] = {}

    async def open(self, *, exclusive: bool = False) -> None:
        self._open = True

    async def close(self) -> None:
        async with self._lock:
            self._open = False

    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        result = await self._commit(IntakeRequest(delivery, tuple(observations)))
        assert isinstance(result, IntakeResult)
        return result

    async def reject(self, delivery: Delivery, reason: str) -> int:
        result = await self._commit(IntakeRequest(delivery, rejection=reason))
        assert isinstance(result, IntakeResult)
        return result.delivery_id

    def _holds(self, record: AttemptRecord) -> bool:
        """Whether the record may be written: its owner still holds the lease (a replay:
        the item is not pending; a retry: it is, and no live lease holds it)."""
        key = self._by_id.get(record.entry_id)
        if key is None:
            return False
        if record.retry_pending:
            lease = self._leases.get(record.entry_id)
            live = lease is not None and lease[1] > utcnow()
            return self._outbox[key].status == "pending" and not live
        if record.owner is None:
            return self._outbox[key].status != "pending"
        lease = self._leases.get(record.entry_id)
        return lease is not None and lease[0] == record.owner

    def _apply_attempt(self, record: AttemptRecord, now: datetime) -> None:
        entry = self._outbox[self._by_id[record.entry_id]]
        key = entry.item.key
        item = entry.item if record.payload is None else replace(entry.item, payload=dict(record.payload))
        self._outbox[key] = replace(
            entry,
            item=item,
            status=record.status,
            attempts=record.attempts,
            last_error=record.last_error,
            updated_at=now,
            next_attempt_at=record.next_attempt_at,
        )
        self._leases.pop(record.entry_id, None)
        if record.sink_state is not None:
            sink, reason = record.sink_state
            if reason is None:
                self._disabled.pop(sink, None)
            else:
                self._disabled[sink] = reason

    async def record_attempt(self, record: AttemptRecord) -> Event | None:
        result = await self._commit(record)
        if isinstance(result, Refused):
            raise LeaseLost(result)
        assert result is None or isinstance(result, Event)
        return result

    async def claim(self, claim: Claim) -> list[OutboxEntry]:
        async with self._lock:
            self._check_open()
            due = sorted(
                (e for e in self._outbox.values() if self._claimable(e, claim)),
                key=lambda e: (e.next_attempt_at or e.created_at, e.id),
            )[: claim.limit]
            for entry in due:
                self._leases[entry.id] = (claim.owner, claim.lease_until)
            return due

    async def has_due(self, claim: Claim) -> bool:
        return any(self._claimable(e, claim) for e in self._outbox.values())

    async def renew(self, owner: str, entry_ids: Collection[int], until: datetime) -> list[int]:
        async with self._lock:
            self._check_open()
            held = [i for i in entry_ids if self._leases.get(i, ("", until))[0] == owner]
            for entry_id in held:
                self._leases[entry_id] = (owner, until)
            return held

    async def release(self, owner: str) -> int:
        async with self._lock:
            mine = [i for i, (holder, _) in self._leases.items() if holder == owner]
            for entry_id in mine:
                del self._leases[entry_id]
            return len(mine)

    def _check_open(self) -> None:
        if not self._open:
            raise StoreClosed("the store is not open")

    def _claimable(self, entry: OutboxEntry, claim: Claim) -> bool:
        item = entry.item
        if item.kind != claim.kind or entry.status != "pending" or item.sink in self._disabled:
            return False
        if (entry.next_attempt_at or entry.created_at) > claim.now:
            return False
        lease = self._leases.get(entry.id)
        if lease is not None and lease[1] > claim.now:
            return False
        if claim.wait_for_downloads and item.kind == "notify" and item.payload.get("status") == "succeeded":
            return not any(
                e.item.kind == "download" and e.status == "pending"
                for e in self._outbox.values()
                if (e.item.provider, e.item.job_id) == (item.provider, item.job_id)
            )
        return True

    async def _commit(self, request: WriteRequest) -> Result:
        async with self._lock:
            self._check_open()
            jobs = {k: self._jobs[k][1] for k in request.job_keys() if k in self._jobs}
            try:
                plan = plan_batch([request], jobs, self.planner, utcnow(), self._removed)
            except Exception as exc:  # as the SQL backends report it: the store's own error
                raise StoreError(f"the store could not commit: {type(exc).__name__}: {exc}") from exc
            refused = {n for n, record in enumerate(plan.attempts) if not self._holds(record)}
            first_delivery, first_seq = len(self._deliveries) + 1, len(self._events) + 1
            [result] = settle(
                plan, range(first_delivery, first_delivery + len(plan.deliveries)), first_seq, refused
            )
            events = [result] if isinstance(result, Event) else []
            if isinstance(result, IntakeResult):
                events = list(result.events)
            written = [e for e in plan.events if e.attempt not in refused]
            logged = {(e.provider, e.job_id, e.fingerprint) for e in written if e.fingerprint is not None}
            if logged & self._fingerprints:  # the unique index of the SQL backends
                raise StoreError(f"fingerprints logged twice: {sorted(logged & self._fingerprints)}")
            self._fingerprints |= logged
            self._events.extend(events)
            for n, d in enumerate(plan.deliveries):
                body = bytes(d.delivery.body)
                stored = replace(d.delivery, body=body[:MAX_STORED_BODY])
                self._deliveries.append(
                    StoredDelivery(first_delivery + n, stored, d.verdict, d.reason, len(body))
                )
            for key, job in plan.jobs.items():
                if key in self._jobs:
                    position = self._jobs[key][0]
                else:
                    position = self._last_jid = self._last_jid + 1
                self._jobs[key] = (position, job)
            now = utcnow()
            for item in plan.outbox:
                if item.key not in self._outbox:
                    self._last_outbox += 1
                    entry = OutboxEntry(self._last_outbox, item, item.status, 0, None, now, now, now)
                    self._outbox[item.key] = entry
                    self._by_id[entry.id] = item.key
            held = [record for n, record in enumerate(plan.attempts) if n not in refused]
            for record in held:
                self._apply_attempt(record, now)
            self.events_appended += len(written)
            self._heard(appended=bool(events), outbox=bool(plan.outbox or held))
            return result

    async def get_job(self, provider: str, job_id: str) -> Job | None:
        found = self._jobs.get((provider, job_id))
        return found[1] if found else None

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
        before = rows.decode_cursor(cursor) if cursor is not None else None
        wanted = JobFilter(provider, status, q, since, until, conflict)
        matching = sorted(
            (
                (position, job)
                for position, job in self._jobs.values()
                if wanted.matches(job) and (before is None or position < before)
            ),
            key=lambda pair: -pair[0],
        )
        page = matching[:limit]
        more = len(matching) > limit
        listed = [replace(job, seen=frozenset()) for _, job in page]  # as the port says
        return Page(listed, rows.encode_cursor(page[-1][0]) if more else None)

    async def open_jobs(self, provider: str, limit: int = 100_000) -> list[Job]:
        found = sorted(
            (position, job)
            for position, job in self._jobs.values()
            if job.provider == provider and not job.status.terminal
        )
        return [job for _, job in found[:limit]]

    async def open_jobs_after(self, provider: str, after: int, limit: int = 10_000) -> tuple[list[Job], int]:
        found = sorted(
            (position, job)
            for position, job in self._jobs.values()
            if job.provider == provider and not job.status.terminal and position > after
        )[:limit]
        return [job for _, job in found], (found[-1][0] if found else after)

    async def job_events(
        self, provider: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        found = [e for e in self._events if e.provider == provider and e.job_id == job_id and e.seq > after]
        return [e for e in found if e.seq not in self._gone_events][:limit]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        if not self._gone_events:
            return self._events[seq : seq + limit]
        found: list[Event] = []
        for event in self._events[seq:]:
            if event.seq not in self._gone_events:
                found.append(event)
                if len(found) == limit:
                    break
        return found

    async def last_seq(self) -> int:
        return len(self._events)

    async def outbox_for_job(self, provider: str, job_id: str) -> list[OutboxEntry]:
        return [e for e in self._outbox.values() if e.item.provider == provider and e.item.job_id == job_id]

    async def outbox_for_jobs(self, keys: Sequence[JobKey]) -> dict[JobKey, list[ListedItem]]:
        found: dict[JobKey, list[ListedItem]] = {key: [] for key in keys}
        for entry in self._outbox.values():
            key = (entry.item.provider, entry.item.job_id)
            if key in found:
                found[key].append(ListedItem.of(entry))
        return found

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
        found = [
            e
            for e in sorted(self._outbox.values(), key=lambda e: e.id)
            if e.id > after
            and (status is None or e.status == status)
            and (sink is None or e.item.sink == sink)
            and (since is None or e.created_at >= since)
            and (until is None or e.created_at < until)
        ]
        return found[:limit]

    async def outbox_entry(self, entry_id: int) -> OutboxEntry | None:
        key = self._by_id.get(entry_id)
        return self._outbox[key] if key is not None else None

    async def disabled_sinks(self) -> dict[str, str]:
        return dict(self._disabled)

    async def deliveries(
        self, *, provider: str | None = None, job_id: str | None = None, limit: int = 1000
    ) -> list[StoredDelivery]:
        found = [
            d
            for d in self._deliveries
            if d.id not in self._gone
            and (provider is None or d.delivery.provider == provider)
            and (job_id is None or d.delivery.job_id == job_id)
        ]
        return found[:limit]

    async def delivery_page(self, filters: DeliveryFilter, limit: int = 50) -> list[StoredDelivery]:
        f = filters
        found = [
            d
            for d in reversed(self._deliveries)
            if d.id not in self._gone
            and (f.before is None or d.id < f.before)
            and (f.verdict is None or d.verdict.value == f.verdict)
            and (f.provider is None or d.delivery.provider == f.provider)
            and (f.since is None or d.delivery.received_at >= f.since)
            and (f.until is None or d.delivery.received_at < f.until)
        ]
        return found[:limit]

    async def delivery(self, delivery_id: int) -> StoredDelivery | None:
        if delivery_id in self._gone or not 0 < delivery_id <= len(self._deliveries):
            return None
        return self._deliveries[delivery_id - 1]

    async def prune_deliveries(
        self, after: int, raw_before: datetime, rejected_before: datetime, page: int = 500
    ) -> Pruned:
        self._check_open()
        chosen = [d for d in self._deliveries[max(after, 0) :] if d.id not in self._gone][:page]
        found = [(d.id, d.verdict.value, d.delivery.received_at) for d in chosen]
        decision = retention.decide(found, after, raw_before, rejected_before, page)
        self._gone.update(decision.delete)
        return decision.pruned()

    async def prune_notifications(self, after: int, before: datetime, page: int = 500) -> Sweep:
        async with self._lock:
            self._check_open()
            last = max(self._by_id, default=0)
            ids = sorted(i for i in self._by_id if after < i < last)[:page]
            found = [self._outbox[self._by_id[i]] for i in ids]
            sweep = retention.choose_notifications(
                ((e.id, e.item.kind, e.status, e.created_at, e.updated_at) for e in found),
                after,
                before,
                page,
            )
            for entry_id in sweep.delete:
                del self._outbox[self._by_id.pop(entry_id)]
            return sweep

    async def remove_jobs(self, after: int, before: datetime, page: int = 500) -> Removal:
        async with self._lock:
            self._check_open()
            busy = {(e.item.provider, e.item.job_id) for e in self._outbox.values() if e.status == "pending"}
            found = sorted(
                (position, key, job) for key, (position, job) in self._jobs.items() if position > after
            )[:page]
            choice = retention.choose_jobs(
                (
                    (position, *key, job.status.value, job.created_at, job.updated_at, key in busy)
                    for position, key, job in found
                ),
                after,
                before,
                page,
            )
            gone = {(provider, job_id) for _, provider, job_id in choice.remove}
            if not gone:
                return choice
            for job_key in gone:
                del self._jobs[job_key]
                self._polls.pop(job_key, None)
            self._removed |= gone
            self._gone_events.update(e.seq for e in self._events if (e.provider, e.job_id) in gone)
            self._gone.update(
                d.id for d in self._deliveries if (d.delivery.provider, d.delivery.job_id) in gone
            )
            for key, entry in list(self._outbox.items()):
                if (entry.item.provider, entry.item.job_id) in gone:
                    del self._outbox[key]
                    del self._by_id[entry.id]
                    self._leases.pop(entry.id, None)
            self._fingerprints = {f for f in self._fingerprints if (f[0], f[1]) not in gone}
            return choice

    async def record_polls(self, polls: Sequence[Polls]) -> int:
        async with self._lock:
            self._check_open()
            updated = 0
            for record in merged(polls):
                key = (record.provider, record.job_id)
                if key not in self._jobs:
                    continue
                before = self._polls.get(key)
                self._polls[key] = record._replace(answers=record.answers + (before.answers if before else 0))
                updated += 1
            return updated

    async def polls(self, provider: str, job_id: str) -> Polls | None:
        return self._polls.get((provider, job_id))

    async def job_counts(self) -> JobCounts:
        self._check_open()
        by_status: dict[tuple[str, str], int] = {}
        conflicts: dict[str, int] = {}
        for _, job in self._jobs.values():
            key = (job.provider, job.status.value)
            by_status[key] = by_status.get(key, 0) + 1
            if job.conflict:
                conflicts[job.provider] = conflicts.get(job.provider, 0) + 1
        return JobCounts(by_status, conflicts)

    async def events_per_minute(self, since: datetime) -> list[tuple[datetime, int]]:
        self._check_open()
        counts: dict[datetime, int] = {}
        for event in reversed(self._events):
            if event.at < since:
                break
            if event.seq in self._gone_events:
                continue
            minute = event.at.astimezone(UTC).replace(second=0, microsecond=0)
            counts[minute] = counts.get(minute, 0) + 1
        return sorted(counts.items())

    async def gauges(self) -> Gauges:
        self._check_open()
        outbox: dict[tuple[str, str, str], int] = {}
        for entry in self._outbox.values():
            if entry.status in ("pending", "dead"):
                key = (entry.item.kind, entry.item.sink, entry.status)
                outbox[key] = outbox.get(key, 0) + 1
        open_jobs: dict[str, int] = {}
        for _, job in self._jobs.values():
            if job.status in (Status.QUEUED, Status.PROCESSING):
                open_jobs[job.provider] = open_jobs.get(job.provider, 0) + 1
        return Gauges(outbox, open_jobs)

    async def ping(self) -> None:
        self._check_open()

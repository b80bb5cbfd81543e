"""An in-process backend for fast tests: the same behaviour, kept in dicts and lists."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from core.intake import IntakeRequest, JobKey, Planner, plan_batch
from core.model import Delivery, Event, IntakeResult, Job, Observation, OutboxEntry, utcnow
from store import rows
from store.base import MAX_STORED_BODY, Page, Store, StoredDelivery, StoreError


class MemoryStore(Store):
    def __init__(self, planner: Planner) -> None:
        super().__init__(planner)
        self._open = False
        self._lock = asyncio.Lock()
        self._deliveries: list[StoredDelivery] = []
        self._events: list[Event] = []
        self._fingerprints: set[tuple[str, str, str]] = set()
        self._jobs: dict[JobKey, tuple[int, Job]] = {}
        self._outbox: dict[str, OutboxEntry] = {}

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        async with self._lock:
            self._open = False

    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        return await self._commit(IntakeRequest(delivery, tuple(observations)))

    async def reject(self, delivery: Delivery, reason: str) -> int:
        return (await self._commit(IntakeRequest(delivery, rejection=reason))).delivery_id

    async def _commit(self, request: IntakeRequest) -> IntakeResult:
        async with self._lock:
            if not self._open:
                raise StoreError("the store is not open")
            jobs = {k: self._jobs[k][1] for k in request.job_keys() if k in self._jobs}
            plan = plan_batch(
                [request],
                jobs,
                len(self._deliveries) + 1,
                len(self._events) + 1,
                self.planner,
                utcnow(),
            )
            for planned in plan.events:
                e = planned.event
                if planned.fingerprint is not None:
                    logged = (e.provider, e.job_id, planned.fingerprint)
                    if logged in self._fingerprints:
                        raise StoreError(f"fingerprint {logged} logged twice")
                    self._fingerprints.add(logged)
                self._events.append(e)
            for d in plan.deliveries:
                body = bytes(d.delivery.body)
                stored = replace(d.delivery, body=body[:MAX_STORED_BODY])
                self._deliveries.append(StoredDelivery(d.id, stored, d.verdict, d.reason, len(body)))
            for key, job in plan.jobs.items():
                position = self._jobs[key][0] if key in self._jobs else len(self._jobs) + 1
                self._jobs[key] = (position, job)
            now = utcnow()
            for item in plan.outbox:
                if item.key not in self._outbox:
                    entry = OutboxEntry(len(self._outbox) + 1, item, item.status, 0, None, now, now)
                    self._outbox[item.key] = entry
            if plan.events:
                self._notify_appended()
            return plan.results[0]

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
    ) -> Page:
        before = rows.decode_cursor(cursor) if cursor is not None else None
        matching = sorted(
            (
                (position, job)
                for position, job in self._jobs.values()
                if (provider is None or job.provider == provider)
                and (status is None or job.status.value == status)
                and (before is None or position < before)
            ),
            key=lambda pair: -pair[0],
        )
        page = matching[:limit]
        more = len(matching) > limit
        return Page([job for _, job in page], rows.encode_cursor(page[-1][0]) if more else None)

    async def open_jobs(self, provider: str, limit: int = 100_000) -> list[Job]:
        found = sorted(
            (position, job)
            for position, job in self._jobs.values()
            if job.provider == provider and not job.status.terminal
        )
        return [job for _, job in found[:limit]]

    async def job_events(
        self, provider: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        found = [e for e in self._events if e.provider == provider and e.job_id == job_id and e.seq > after]
        return found[:limit]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        return self._events[seq : seq + limit]

    async def outbox_for_job(self, provider: str, job_id: str) -> list[OutboxEntry]:
        return [e for e in self._outbox.values() if e.item.provider == provider and e.item.job_id == job_id]

    async def deliveries(
        self, *, provider: str | None = None, job_id: str | None = None, limit: int = 1000
    ) -> list[StoredDelivery]:
        found = [
            d
            for d in self._deliveries
            if (provider is None or d.delivery.provider == provider)
            and (job_id is None or d.delivery.job_id == job_id)
        ]
        return found[:limit]

    async def ping(self) -> None:
        if not self._open:
            raise StoreError("the store is not open")

"""The outbox worker: claim due work, run it, record every attempt.

    while not cancelled: fill each pool from the outbox, then idle until work may be due

Downloads and notifications have their own pools (a slow download never delays a
notification). Every claim leases its items to this worker (`owner`) for `Pool.lease`
seconds, and the worker renews the leases of the attempts it is running every third of
that, so a slow attempt is never run twice at once, while the work of a process that died
is free again within one lease. An attempt whose lease was lost (another worker holds
the item now) is stopped, and its record would be refused by the store anyway. Each
attempt's outcome becomes an `AttemptRecord` (pure: dispatch/schedule.py), stored with
its `dispatch` event through the same writer as intake. If the process dies between an
attempt and its record, the work runs again once the lease ends: at least once, with the
same stable id. A worker that stops cleanly releases its own leases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog
from structlog.contextvars import bind_contextvars

from jobtrail.core.logs import Redactor
from jobtrail.core.model import OutboxEntry, utcnow
from jobtrail.dispatch.schedule import Outcome, RetrySchedule, decide
from jobtrail.runtime.health import Component, State
from jobtrail.runtime.identity import new_owner
from jobtrail.store.base import Claim, LeaseLost, Store, StoreError, StoreUnavailable

log = structlog.get_logger(__name__)

IDLE = 1.0


@dataclass(frozen=True, slots=True)
class Pool:
    kind: str
    size: int
    lease: float  # seconds; renewed every third of it while an attempt runs
    run: Callable[[OutboxEntry], Awaitable[Outcome]]


class Worker:
    def __init__(
        self,
        store: Store,
        pools: Sequence[Pool],
        schedule: RetrySchedule,
        component: Component,
        *,
        wait_for_downloads: bool = True,
        idle: float = IDLE,
        secrets: Sequence[str] = (),
        owner: str | None = None,
    ) -> None:
        self.store, self.pools, self.schedule, self.component = store, pools, schedule, component
        self.wait_for_downloads, self.idle = wait_for_downloads, idle
        self.owner = owner or new_owner()
        self._redactor = Redactor(secrets)
        # each pool's attempts in progress, by outbox item id
        self._running: dict[str, dict[int, asyncio.Task[None]]] = {pool.kind: {} for pool in pools}
        self._recording: set[int] = set()  # attempts done, their record on its way: nothing to renew
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self.component.set(State.RUNNING)
        renewing = asyncio.create_task(self._renew_leases(), name="dispatch-lease-renewal")
        try:
            while True:
                self._wake.clear()
                changes = self.store.outbox_changes
                try:
                    for pool in self.pools:
                        await self._fill(pool)
                except StoreUnavailable as exc:  # the store is down or restarting: wait, go on
                    self._unavailable(exc)
                else:
                    if self.component.state is not State.RUNNING:
                        self.component.set(State.RUNNING)
                await self._idle(changes)
        finally:
            tasks = [renewing, *(task for running in self._running.values() for task in running.values())]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._release()

    def _unavailable(self, exc: StoreUnavailable) -> None:
        until = utcnow() + timedelta(seconds=self.idle)
        if self.component.state is not State.BACKING_OFF:
            log.warning("dispatch_store_unavailable", error=str(exc))
        self.component.set(State.BACKING_OFF, f"the store is unavailable: {exc}", until)

    async def _release(self) -> None:
        """Free this worker's leases, so its unfinished work runs again at once elsewhere
        (or after a restart) instead of after the lease."""
        try:
            released = await self.store.release(self.owner)
        except StoreError as exc:
            log.warning("dispatch_leases_not_released", error=str(exc))
            return
        if released:
            log.info("dispatch_leases_released", count=released)

    async def _fill(self, pool: Pool) -> None:
        running = self._running[pool.kind]
        free = pool.size - len(running)
        if free <= 0:
            return
        now = utcnow()
        claim = Claim(
            pool.kind, now, now + timedelta(seconds=pool.lease), free, self.owner, self.wait_for_downloads
        )
        if not await self.store.has_due(claim):
            return
        for entry in await self.store.claim(claim):
            task = asyncio.create_task(self._attempt(pool, entry), name=f"dispatch-{pool.kind}-{entry.id}")
            running[entry.id] = task
            task.add_done_callback(self._finished(running, entry.id))

    def _finished(
        self, running: dict[int, asyncio.Task[None]], entry_id: int
    ) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if running.get(entry_id) is task:
                del running[entry_id]
            self._wake.set()

        return done

    async def _renew_leases(self) -> None:
        """Every third of a pool's lease, extend the leases of its running attempts; stop
        an attempt whose lease another worker holds now."""
        every = min(pool.lease for pool in self.pools) / 3 if self.pools else 60.0
        while True:
            await asyncio.sleep(every)
            for pool in self.pools:
                running = self._running[pool.kind]
                ids = [entry_id for entry_id in running if entry_id not in self._recording]
                if not ids:
                    continue
                try:
                    held = set(
                        await self.store.renew(self.owner, ids, utcnow() + timedelta(seconds=pool.lease))
                    )
                except StoreError as exc:
                    log.warning("dispatch_leases_not_renewed", kind=pool.kind, error=str(exc))
                    continue
                for entry_id in ids:
                    task = running.get(entry_id)
                    if entry_id in held or task is None or task.done() or entry_id in self._recording:
                        continue  # held, or finished (its record released the lease) meanwhile
                    log.warning("dispatch_lease_lost", entry_id=entry_id, kind=pool.kind)
                    task.cancel()

    async def _idle(self, changes: int) -> None:
        """Until an attempt finishes, outbox work is added or changed, or `idle` passes.
        Work added while the pools were being filled (`changes` moved on) ends it at once."""
        if self._wake.is_set() or self.store.outbox_changes != changes:
            return
        changed = asyncio.ensure_future(self.store.wait_for_outbox(self.idle))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({changed, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (changed, woken):
                waiter.cancel()
            # No suppress(CancelledError) here: a cancel of this task landing during this
            # gather must propagate, or the worker would never stop.
            await asyncio.gather(changed, woken, return_exceptions=True)

    async def _attempt(self, pool: Pool, entry: OutboxEntry) -> None:
        # Its own task (a copy of the context): every line below names the job.
        bind_contextvars(provider=entry.item.provider, job_id=entry.item.job_id, outbox_id=entry.id)
        started = time.monotonic()
        try:
            outcome = await pool.run(entry)
        except Exception as exc:
            log.exception("dispatch_attempt_crashed", key=entry.item.key)
            outcome = Outcome(False, error=f"internal error: {type(exc).__name__}: {exc}")
        if outcome.error:  # an error text may quote a URL or a header: never log a secret
            outcome = replace(outcome, error=self._redactor.scrub(outcome.error))
        record = decide(entry, outcome, self.schedule, utcnow(), time.monotonic() - started)
        self._recording.add(entry.id)
        try:
            await self.store.record_attempt(record._replace(owner=self.owner))
        except LeaseLost as exc:
            log.warning("dispatch_attempt_refused", key=entry.item.key, reason=str(exc))
            return
        except StoreError as exc:  # the lease ends, and the work runs again
            log.error("dispatch_attempt_not_recorded", key=entry.item.key, error=str(exc))
            return
        finally:
            self._recording.discard(entry.id)
        self.component.saw_event(what=record.event_type or "deferred")
        level = log.error if record.status == "dead" else log.warning if record.last_error else log.info
        level(
            "dispatch_attempt",
            key=entry.item.key,
            outcome=record.event_type,
            attempt=record.attempts,
            error=record.last_error,
        )

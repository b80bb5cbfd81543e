"""The outbox worker: claim due work, run it, record every attempt.

    while not cancelled: fill each pool from the outbox, then idle until work may be due

Downloads and notifications have their own pools (a slow download never delays a
notification) and their own leases, longer than an attempt may take, so an attempt is
never run twice at once. Each attempt's outcome becomes an `AttemptRecord` (pure:
dispatch/schedule.py), stored with its `dispatch` event through the same writer as
intake. If the process dies between an attempt and its record, the lease is released at
the next start and the work runs again: at least once, with the same stable id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog

from core.logs import Redactor
from core.model import OutboxEntry, utcnow
from dispatch.schedule import Outcome, RetrySchedule, decide
from listeners.health import Component, State
from store.base import Claim, Store

log = structlog.get_logger(__name__)

IDLE = 1.0


@dataclass(frozen=True, slots=True)
class Pool:
    kind: str
    size: int
    lease: float
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
    ) -> None:
        self.store, self.pools, self.schedule, self.component = store, pools, schedule, component
        self.wait_for_downloads, self.idle = wait_for_downloads, idle
        self._redactor = Redactor(secrets)
        self._running: dict[str, set[asyncio.Task[None]]] = {pool.kind: set() for pool in pools}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self.component.set(State.RUNNING)
        try:
            while True:
                self._wake.clear()
                changes = self.store.outbox_changes
                for pool in self.pools:
                    await self._fill(pool)
                await self._idle(changes)
        finally:
            tasks = [task for running in self._running.values() for task in running]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fill(self, pool: Pool) -> None:
        running = self._running[pool.kind]
        free = pool.size - len(running)
        if free <= 0:
            return
        now = utcnow()
        claim = Claim(pool.kind, now, now + timedelta(seconds=pool.lease), free, self.wait_for_downloads)
        if not await self.store.has_due(claim):
            return
        for entry in await self.store.claim(claim):
            task = asyncio.create_task(self._attempt(pool, entry), name=f"dispatch-{pool.kind}-{entry.id}")
            running.add(task)
            task.add_done_callback(self._finished(running))

    def _finished(self, running: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            self._wake.set()

        return done

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
        started = time.monotonic()
        try:
            outcome = await pool.run(entry)
        except Exception as exc:
            log.exception("dispatch_attempt_crashed", key=entry.item.key)
            outcome = Outcome(False, error=f"internal error: {type(exc).__name__}: {exc}")
        if outcome.error:  # an error text may quote a URL or a header: never log a secret
            outcome = replace(outcome, error=self._redactor.scrub(outcome.error))
        record = decide(entry, outcome, self.schedule, utcnow(), time.monotonic() - started)
        try:
            await self.store.record_attempt(record)
        except Exception:
            log.exception("dispatch_attempt_not_recorded", key=entry.item.key)
            return
        self.component.saw_event(what=record.event_type or "deferred")
        log.info(
            "dispatch_attempt",
            key=entry.item.key,
            outcome=record.event_type,
            attempt=record.attempts,
            error=record.last_error,
        )

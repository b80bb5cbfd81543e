"""The outbox worker: claim due work, run it, record every attempt.

    while not cancelled: fill each pool from the outbox, then idle until work may be due

Downloads and notifications have their own pools (a slow download never delays a
notification). Every claim leases its items to this worker (`owner`) for `Pool.lease`
seconds, and the worker renews the leases of the items it holds every third of that, so
a slow attempt is never run twice at once, while the work of a process that died is free
again within one lease. An attempt whose lease was lost (another worker holds the item
now) is stopped, and its record would be refused by the store anyway. Each attempt's
outcome becomes an `AttemptRecord` (pure: dispatch/schedule.py), stored with its
`dispatch` event through the same writer as intake. If the process dies between an
attempt and its record, the work runs again once the lease ends: at least once, with the
same stable id. A worker that stops cleanly waits a moment for the records on their way,
then releases its own leases.

Each pool's items go through a `Lane`: claimed and ready, running (a slot: `Pool.size`
requests in flight at most), then recording. A claim and a record each wait for a
commit, so neither holds a slot: the lane claims up to a pool's worth ahead of its
slots, a finished attempt's slot takes the next ready item at once, and its record
commits behind it (records share the writer's group commits). Once a pool's worth of
records is on its way the lane claims nothing more, so a store that stalls holds the
pool back (at most its claimed items finish) instead of piling records up in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
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
RECORD_GRACE = 5.0  # seconds a stopping worker waits for the records on their way


@dataclass(frozen=True, slots=True)
class Pool:
    kind: str
    size: int
    lease: float  # seconds; renewed every third of it while this worker holds an item
    run: Callable[[OutboxEntry], Awaitable[Outcome]]


@dataclass(slots=True)
class Lane:
    """One pool's items in this worker, by outbox item id, each in one stage at a time."""

    pool: Pool
    ready: dict[int, OutboxEntry] = field(default_factory=dict)  # claimed, waiting for a slot
    running: dict[int, asyncio.Task[None]] = field(default_factory=dict)  # attempts in flight
    recording: dict[int, asyncio.Task[None]] = field(default_factory=dict)  # outcome known

    def wanted(self) -> int:
        """How many items to claim: every slot busy and as many ready behind them, none
        while a pool's worth of records is still on its way."""
        if len(self.recording) >= self.pool.size:
            return 0
        return 2 * self.pool.size - len(self.running) - len(self.ready)

    def held(self) -> list[int]:
        """The items whose leases this worker renews (a record releases its own)."""
        return [*self.ready, *self.running]


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
        self._lanes = {pool.kind: Lane(pool) for pool in pools}
        self._stopping = False
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
                    for lane in self._lanes.values():
                        await self._fill(lane)
                except StoreUnavailable as exc:  # the store is down or restarting: wait, go on
                    self._unavailable(exc)
                else:
                    if self.component.state is not State.RUNNING:
                        self.component.set(State.RUNNING)
                await self._idle(changes)
        finally:
            self._stopping = True  # nothing ready starts now; `_release` frees it
            tasks = [renewing, *(task for lane in self._lanes.values() for task in lane.running.values())]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._drain()
            await self._release()

    async def _drain(self) -> None:
        """Let the records on their way commit (for `RECORD_GRACE` at most): a record
        dropped here would make its attempt run again."""
        records = [task for lane in self._lanes.values() for task in lane.recording.values()]
        if not records:
            return
        _, late = await asyncio.wait(records, timeout=RECORD_GRACE)
        for task in late:
            task.cancel()
        await asyncio.gather(*records, return_exceptions=True)

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

    async def _fill(self, lane: Lane) -> None:
        self._start(lane)
        wanted = lane.wanted()
        if wanted <= 0:
            return
        pool, now = lane.pool, utcnow()
        claim = Claim(
            pool.kind, now, now + timedelta(seconds=pool.lease), wanted, self.owner, self.wait_for_downloads
        )
        if not await self.store.has_due(claim):
            return
        for entry in await self.store.claim(claim):
            lane.ready[entry.id] = entry
        self._start(lane)

    def _start(self, lane: Lane) -> None:
        """Give each free slot the next ready item."""
        while lane.ready and len(lane.running) < lane.pool.size and not self._stopping:
            entry_id = next(iter(lane.ready))
            entry = lane.ready.pop(entry_id)
            task = asyncio.create_task(
                self._attempt(lane, entry), name=f"dispatch-{lane.pool.kind}-{entry_id}"
            )
            lane.running[entry_id] = task
            task.add_done_callback(self._finished(lane, entry_id))

    def _finished(self, lane: Lane, entry_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            for tasks in (lane.running, lane.recording):
                if tasks.get(entry_id) is task:
                    del tasks[entry_id]
            self._start(lane)
            self._wake.set()

        return done

    def _outcome_known(self, lane: Lane, entry_id: int) -> None:
        """The attempt is over: its slot takes the next item while its record commits."""
        task = asyncio.current_task()
        if task is not None and lane.running.get(entry_id) is task:
            del lane.running[entry_id]
            lane.recording[entry_id] = task
            self._start(lane)
            self._wake.set()

    async def _renew_leases(self) -> None:
        """Every third of a pool's lease, extend the leases of the items this worker
        holds; stop an attempt (or drop a ready item) whose lease another worker holds now."""
        every = min(pool.lease for pool in self.pools) / 3 if self.pools else 60.0
        while True:
            await asyncio.sleep(every)
            for lane in self._lanes.values():
                ids = lane.held()
                if not ids:
                    continue
                until = utcnow() + timedelta(seconds=lane.pool.lease)
                try:
                    held = set(await self.store.renew(self.owner, ids, until))
                except StoreError as exc:
                    log.warning("dispatch_leases_not_renewed", kind=lane.pool.kind, error=str(exc))
                    continue
                for entry_id in ids:
                    if entry_id in held:
                        continue
                    if lane.ready.pop(entry_id, None) is not None:
                        log.warning("dispatch_lease_lost", entry_id=entry_id, kind=lane.pool.kind)
                        continue
                    task = lane.running.get(entry_id)
                    if task is None or task.done():
                        continue  # finished (its record is on its way) meanwhile
                    log.warning("dispatch_lease_lost", entry_id=entry_id, kind=lane.pool.kind)
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

    async def _attempt(self, lane: Lane, entry: OutboxEntry) -> None:
        # Its own task (a copy of the context): every line below names the job.
        bind_contextvars(provider=entry.item.provider, job_id=entry.item.job_id, outbox_id=entry.id)
        started = time.monotonic()
        try:
            outcome = await lane.pool.run(entry)
        except Exception as exc:
            log.exception("dispatch_attempt_crashed", key=entry.item.key)
            outcome = Outcome(False, error=f"internal error: {type(exc).__name__}: {exc}")
        if outcome.error:  # an error text may quote a URL or a header: never log a secret
            outcome = replace(outcome, error=self._redactor.scrub(outcome.error))
        record = decide(entry, outcome, self.schedule, utcnow(), time.monotonic() - started)
        self._outcome_known(lane, entry.id)
        try:
            await self.store.record_attempt(record._replace(owner=self.owner))
        except LeaseLost as exc:
            log.warning("dispatch_attempt_refused", key=entry.item.key, reason=str(exc))
            return
        except StoreError as exc:  # the lease ends, and the work runs again
            log.error("dispatch_attempt_not_recorded", key=entry.item.key, error=str(exc))
            return
        self.component.saw_event(what=record.event_type or "deferred")
        level = log.error if record.status == "dead" else log.warning if record.last_error else log.info
        level(
            "dispatch_attempt",
            key=entry.item.key,
            outcome=record.event_type,
            attempt=record.attempts,
            error=record.last_error,
        )

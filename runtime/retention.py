"""The pruner: retention of deliveries, of delivered notifications and, if asked, of old
finished jobs (store/retention.py), run by the leader.

Every `interval` seconds it walks the deliveries from where the old ones it has already
dealt with end, a page at a time, each page one short transaction, with a pause between
pages so intake is never held up for long. It remembers where the rows past both windows
end, so a later run starts there instead of at the first delivery ever kept (after a
restart it walks from the start once). What it did is counted on its health component
(`deleted`: `/readyz`, `jobtrail_component_outcomes_total` in `/metrics`) and
logged.

With `notifications_days` set, each run then walks the outbox in the same way, from
where the items that need no further look end (downloads stay for ever: they are the
job's record of its result file): notifications done before the cut go (counted as
`notifications_deleted`). With `jobs_days` set, it then walks the jobs created before
the cut, from the first, page by page: the finished ones last changed before it go
whole (counted as `jobs_removed`). Jobs still open, or with work pending, are looked at
again next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from jobtrail.core.model import utcnow
from jobtrail.core.settings import RetentionSettings
from jobtrail.runtime.health import Component, State
from jobtrail.store.base import Store, StoreUnavailable

log = structlog.get_logger(__name__)

PAGE = 500
# Jobs a page: each takes its events, deliveries and outbox items along (~25 rows), and a
# page holds the write lock while it goes; bench/scale: 500 a page held intake up to 130 ms.
JOB_PAGE = 100
PAUSE = 0.05  # between pages: room for the writer
FOREVER = datetime.min.replace(tzinfo=UTC)


class Pruner:
    def __init__(
        self,
        settings: RetentionSettings,
        store: Store,
        component: Component,
        *,
        page: int = PAGE,
        job_page: int = JOB_PAGE,
        pause: float = PAUSE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings, self.store, self.component = settings, store, component
        self.page, self.job_page, self.pause, self._clock = page, job_page, pause, clock
        self.start = 0  # deliveries up to this id are past both windows and dealt with
        self.outbox_start = 0  # outbox items up to this id need no further look

    async def run(self) -> None:
        self.component.set(State.RUNNING)
        while True:
            try:
                await self.once()
            except StoreUnavailable as exc:
                self.component.set(State.BACKING_OFF, f"the store is unavailable: {exc}")
            else:
                self.component.set(State.RUNNING)
            await asyncio.sleep(self.settings.interval)

    async def once(self) -> int:
        """One walk over what is due now: the deliveries deleted."""
        now = self._clock()
        pruned = await self._deliveries(now)
        if self.settings.notifications_days:
            await self._notifications(now - timedelta(days=self.settings.notifications_days))
        if self.settings.jobs_days:
            await self._jobs(now - timedelta(days=self.settings.jobs_days))
        return pruned

    async def _notifications(self, before: datetime) -> None:
        after, deleted, leading = self.outbox_start, 0, True
        while True:
            done = await self.store.prune_notifications(after, before, self.page)
            deleted += len(done.delete)
            if leading and done.settled is not None:
                self.outbox_start = done.settled
            leading = leading and done.settled == done.last
            after = done.last
            if done.finished:
                break
            await asyncio.sleep(self.pause)
        if deleted:
            self.component.count("notifications_deleted", deleted)
            log.info("notifications_pruned", deleted=deleted, upto=after, before=before.isoformat())

    async def _jobs(self, before: datetime) -> None:
        after, removed = 0, 0
        while True:
            done = await self.store.remove_jobs(after, before, self.job_page)
            removed += len(done.remove)
            after = done.last
            if done.finished:
                break
            await asyncio.sleep(self.pause)
        if removed:
            self.component.count("jobs_removed", removed)
            log.info("jobs_removed", removed=removed, before=before.isoformat())

    async def _deliveries(self, now: datetime) -> int:
        raw_before = self._bound(now, self.settings.deliveries_days)
        rejected_before = self._bound(now, self.settings.rejected_days)
        after, leading, deleted = self.start, True, 0
        while True:
            done = await self.store.prune_deliveries(after, raw_before, rejected_before, self.page)
            deleted += done.deleted
            if leading and done.done_until is not None:
                self.start = done.done_until
            leading = leading and done.all_done
            after = done.last
            if done.finished:
                break
            await asyncio.sleep(self.pause)
        if deleted:
            self.component.count("deleted", deleted)
            log.info("deliveries_pruned", deleted=deleted, upto=after)
        return deleted

    @staticmethod
    def _bound(now: datetime, days: int) -> datetime:
        return now - timedelta(days=days) if days else FOREVER

"""The pruner: retention of deliveries (store/retention.py), run by the leader.

Every `interval` seconds it walks the deliveries from where the old ones it has already
dealt with end, a page at a time, each page one short transaction, with a pause between
pages so intake is never held up for long. It remembers where the rows past both windows
end, so a later run starts there instead of at the first delivery ever kept (after a
restart it walks from the start once). What it did is counted on its health component
(`deleted`, `stripped`: `/readyz`, `jobtrail_component_outcomes_total` in `/metrics`) and
logged.
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
        pause: float = PAUSE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings, self.store, self.component = settings, store, component
        self.page, self.pause, self._clock = page, pause, clock
        self.start = 0  # deliveries up to this id are past both windows and dealt with

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

    async def once(self) -> tuple[int, int]:
        """One walk over what is due now: (deleted, stripped)."""
        now = self._clock()
        raw_before = self._bound(now, self.settings.deliveries_days)
        rejected_before = self._bound(now, self.settings.rejected_days)
        after, leading, deleted, stripped = self.start, True, 0, 0
        while True:
            done = await self.store.prune_deliveries(after, raw_before, rejected_before, self.page)
            deleted, stripped = deleted + done.deleted, stripped + done.stripped
            if leading and done.done_until is not None:
                self.start = done.done_until
            leading = leading and done.all_done
            after = done.last
            if done.finished:
                break
            await asyncio.sleep(self.pause)
        if deleted or stripped:
            self.component.count("deleted", deleted)
            self.component.count("stripped", stripped)
            log.info("deliveries_pruned", deleted=deleted, stripped=stripped, upto=after)
        return deleted, stripped

    @staticmethod
    def _bound(now: datetime, days: int) -> datetime:
        return now - timedelta(days=days) if days else FOREVER

"""The port's reads for the SQL backends (SQLite, PostgreSQL): one implementation over
the queries each dialect's `reads` module names alike (`JOB`, `jobs_page`, ...), run by
the backend's `_fetch`."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from jobtrail.core import turns
from jobtrail.core.intake import JobKey
from jobtrail.core.model import Event, Job, OutboxEntry
from jobtrail.store import rows
from jobtrail.store.base import (
    DeliveryFilter,
    Gauges,
    JobCounts,
    JobDetail,
    JobFilter,
    ListedItem,
    Page,
    Polls,
    Store,
    StoredDelivery,
)

OUTBOX_DEPTH = (
    "SELECT kind, sink, status, count(*) FROM outbox WHERE status IN ('pending', 'dead') "
    "GROUP BY kind, sink, status"
)
OPEN_BY_PROVIDER = (
    "SELECT provider, count(*) FROM jobs WHERE status IN ('queued', 'processing') GROUP BY provider"
)


# Where a row of `JOB_DETAIL` (`rows.detail_query`) gives the job's polls and its outbox
# item: after the job's columns (`rows.job_from`), then polls, polled_at, poll_digest.
DETAIL_POLLS = 12
DETAIL_OUTBOX = DETAIL_POLLS + 3
TIME_SLACK = timedelta(minutes=1)  # how far commit order may stray from time order


class SQLReads(Store):
    queries: Any  # the dialect's reads module (store/sqlite/reads.py, store/postgres/reads.py)

    @abc.abstractmethod
    async def _fetch(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one statement; `StoreError` (`StoreUnavailable`) when it fails."""

    async def get_job(self, provider: str, job_id: str) -> Job | None:
        found = await self._fetch(self.queries.JOB, (provider, job_id))
        return rows.job_from(found[0]) if found else None

    async def polls(self, provider: str, job_id: str) -> Polls | None:
        found = await self._fetch(self.queries.POLLS, (provider, job_id))
        return _polls(provider, job_id, found[0]) if found else None

    async def job_detail(self, provider: str, job_id: str) -> JobDetail | None:
        found = await self._fetch(self.queries.JOB_DETAIL, (provider, job_id))
        if not found:
            return None
        first = found[0]
        polls = _polls(provider, job_id, first[DETAIL_POLLS:DETAIL_OUTBOX])
        outbox = [rows.outbox_from(row[DETAIL_OUTBOX:]) for row in found if row[DETAIL_OUTBOX] is not None]
        return JobDetail(rows.job_from(first), outbox, polls)

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
        span = await self._span("jobs", since, until)
        found = await self._fetch(*self.queries.jobs_page(wanted, before, limit + 1, span))
        more = len(found) > limit
        found = found[:limit]
        next_cursor = rows.encode_cursor(found[-1][-1]) if more and found else None
        return Page(await turns.each(found, rows.job_from), next_cursor)

    async def open_jobs(self, provider: str, limit: int = 100_000) -> list[Job]:
        return [rows.job_from(row) for row in await self._fetch(self.queries.OPEN_JOBS, (provider, limit))]

    async def open_jobs_after(self, provider: str, after: int, limit: int = 10_000) -> tuple[list[Job], int]:
        found = await self._fetch(self.queries.OPEN_JOBS_AFTER, (provider, after, limit))
        return [rows.job_from(row) for row in found], (int(found[-1][-1]) if found else after)

    async def job_events(
        self, provider: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        found = await self._fetch(self.queries.JOB_EVENTS, (provider, job_id, after, limit))
        return await turns.each(found, rows.event_from)

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        return await turns.each(await self._fetch(self.queries.EVENTS_AFTER, (seq, limit)), rows.event_from)

    async def last_seq(self) -> int:
        found = await self._fetch(self.queries.LAST_SEQ)
        return int(found[0][0])

    async def outbox_for_job(self, provider: str, job_id: str) -> list[OutboxEntry]:
        found = await self._fetch(self.queries.JOB_OUTBOX, (provider, job_id))
        return [rows.outbox_from(row) for row in found]

    async def outbox_for_jobs(self, keys: Sequence[JobKey]) -> dict[JobKey, list[ListedItem]]:
        found: dict[JobKey, list[ListedItem]] = {key: [] for key in keys}
        if keys:
            read = await self._fetch(*self.queries.jobs_outbox(keys))
            for key, item in await turns.each(read, rows.listed_from):
                found[key].append(item)
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
        span = await self._span("outbox", since, until)
        found = await self._fetch(*self.queries.outbox_page(status, sink, since, until, after, limit, span))
        return await turns.each(found, rows.outbox_from)

    async def outbox_entry(self, entry_id: int) -> OutboxEntry | None:
        found = await self._fetch(self.queries.OUTBOX_ENTRY, (entry_id,))
        return rows.outbox_from(found[0]) if found else None

    async def disabled_sinks(self) -> dict[str, str]:
        return {name: reason or "" for name, reason in await self._fetch(self.queries.DISABLED_SINKS)}

    async def deliveries(
        self, *, provider: str | None = None, job_id: str | None = None, limit: int = 1000
    ) -> list[StoredDelivery]:
        found = await self._fetch(*self.queries.deliveries_page(provider, job_id, limit))
        return await turns.each(found, rows.delivery_from)

    async def delivery_page(self, filters: DeliveryFilter, limit: int = 50) -> list[StoredDelivery]:
        span = await self._span("deliveries", filters.since, filters.until)
        found = await self._fetch(*self.queries.delivery_page(filters, limit, span))
        return await turns.each(found, rows.delivery_from)

    async def delivery(self, delivery_id: int) -> StoredDelivery | None:
        found = await self._fetch(*self.queries.delivery_page(DeliveryFilter(before=delivery_id + 1), 1))
        return rows.delivery_from(found[0]) if found and found[0][0] == delivery_id else None

    async def job_counts(self) -> JobCounts:
        counted = await self._fetch(self.queries.JOB_COUNTS)
        by_status = {(provider, status): int(n) for provider, status, n in counted}
        conflicts = {provider: int(n) for provider, n in await self._fetch(self.queries.CONFLICTS)}
        return JobCounts(by_status, conflicts)

    async def events_per_minute(self, since: datetime) -> list[tuple[datetime, int]]:
        first = await self._first_key_at("events", since)
        found = await self._fetch(*self.queries.events_per_minute(first, since))
        return [(datetime.fromisoformat(minute).replace(tzinfo=UTC), int(n)) for minute, n in found]

    async def _span(
        self, table: str, since: datetime | None, until: datetime | None
    ) -> tuple[int | None, int | None]:
        """The keys of `table` a time filter can reach, so that the listing reads a key
        range instead of scanning for the times. Keys rise with time (rows are numbered
        as they are written), up to the order in which concurrent writes commit: the
        bounds are widened by TIME_SLACK, and the times are still checked row by row."""
        low = await self._first_key_at(table, since - TIME_SLACK) if since else None
        high = await self._first_key_at(table, until + TIME_SLACK) if until else None
        return low, high

    async def _first_key_at(self, table: str, at: datetime) -> int:
        """The first key of `table` whose row is as late as `at` (the last key + 1 if
        none is), found by bisection in the database: a few primary-key probes, one
        round trip, instead of a scan."""
        return int((await self._fetch(*self.queries.first_key_at(table, at)))[0][0])

    async def gauges(self) -> Gauges:
        outbox = {(kind, sink, status): int(n) for kind, sink, status, n in await self._fetch(OUTBOX_DEPTH)}
        open_jobs = {provider: int(n) for provider, n in await self._fetch(OPEN_BY_PROVIDER)}
        return Gauges(outbox, open_jobs)

    async def count(self, table: str) -> int:
        return int((await self._fetch(self.queries.count(table)))[0][0])

    async def dump(self, table: str, after: Any, limit: int) -> list[tuple[Any, ...]]:
        return [
            rows.neutral(table, row) for row in await self._fetch(*self.queries.dump(table, after, limit))
        ]


def _polls(provider: str, job_id: str, row: Sequence[Any]) -> Polls | None:
    """A job's polls from its (polls, polled_at, poll_digest) columns; None if never polled."""
    count, at, digest = row
    return Polls(provider, job_id, count, rows.time_from(at), digest) if count else None

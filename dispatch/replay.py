"""Replaying outbox work: one item, or every dead-lettered item of a sink or a time range.

A replay puts the item back to `pending` with a fresh attempt count, due now, and logs an
`<kind>.replayed` event. Replaying a sink's dead items also switches the sink back on (it
was switched off by a 410; replaying says the endpoint was fixed). A notification keeps
its webhook id, so a receiver that did get it can still deduplicate.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import NamedTuple

from jobtrail.core.intake import AttemptRecord
from jobtrail.core.model import Event, OutboxEntry, utcnow
from jobtrail.store.base import LeaseLost, Store

PAGE = 500
_NOUN = {"download": "download", "notify": "notification"}


class NotReplayable(Exception):
    """The item is unknown (`unknown`), or its state forbids it (pending, done, attempted
    right now)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


def requeue(entry: OutboxEntry, why: str, enable_sink: bool = False) -> AttemptRecord:
    """The record that puts `entry` back in the queue. Pure."""
    noun = _NOUN.get(entry.item.kind, entry.item.kind)
    return AttemptRecord(
        entry_id=entry.id,
        provider=entry.item.provider,
        job_id=entry.item.job_id,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        last_error=None,
        payload=None,
        event_type=f"{noun}.replayed",
        event_data={"key": entry.item.key, "sink": entry.item.sink, "was": entry.status, "why": why},
        sink_state=(entry.item.sink, None) if enable_sink else None,
    )


async def replay_one(store: Store, entry_id: int) -> Event | None:
    entry = await store.outbox_entry(entry_id)
    if entry is None:
        raise NotReplayable(f"no outbox item {entry_id}", unknown=True)
    if entry.status == "pending":
        raise NotReplayable(f"outbox item {entry_id} is pending already")
    enable = entry.item.sink in await store.disabled_sinks()
    return await store.record_attempt(requeue(entry, "replayed by hand", enable_sink=enable))


async def retry_now(store: Store, entry_id: int) -> Event | None:
    """Run an item now: a dead one is replayed; a pending one (waiting out its retry
    schedule) is made due now, its attempt count kept. Refused for a done item, and for a
    pending one a worker is attempting right now (it will say how that went)."""
    entry = await store.outbox_entry(entry_id)
    if entry is None:
        raise NotReplayable(f"no outbox item {entry_id}", unknown=True)
    if entry.status == "done":
        raise NotReplayable(f"outbox item {entry_id} is done")
    if entry.status != "pending":
        return await replay_one(store, entry_id)
    noun = _NOUN.get(entry.item.kind, entry.item.kind)
    record = AttemptRecord(
        entry_id=entry.id,
        provider=entry.item.provider,
        job_id=entry.item.job_id,
        status="pending",
        attempts=entry.attempts,
        next_attempt_at=utcnow(),
        last_error=entry.last_error,
        payload=None,
        event_type=f"{noun}.retried",
        event_data={"key": entry.item.key, "sink": entry.item.sink, "attempts": entry.attempts},
        retry_pending=True,
    )
    try:
        return await store.record_attempt(record)
    except LeaseLost:
        raise NotReplayable(f"outbox item {entry_id} is being attempted right now") from None


class Replayed(NamedTuple):
    queued: int  # items queued again
    more: bool  # dead items matching were left for another call (the limit was reached)


async def replay_dead(
    store: Store,
    *,
    sink: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> Replayed:
    """Queue every dead item matching the filters again, each once, at most `limit`.

    Pages by id: an item replayed here may be dead again before the last page is read
    (the worker runs meanwhile), and must not be replayed a second time. Each page's
    records go to the store together (one group commit, not one per item)."""
    disabled = await store.disabled_sinks()
    count = last = 0
    enabled: set[str] = set()
    while limit is None or count < limit:
        page = PAGE if limit is None else min(PAGE, limit - count)
        batch = await store.outbox(status="dead", sink=sink, since=since, until=until, limit=page, after=last)
        if not batch:
            return Replayed(count, False)
        last = batch[-1].id
        records = []
        for entry in batch:
            name = entry.item.sink
            records.append(
                requeue(entry, "dead letters replayed", enable_sink=name in disabled and name not in enabled)
            )
            enabled.add(name)
        outcomes = await asyncio.gather(*(store.record_attempt(r) for r in records), return_exceptions=True)
        for outcome in outcomes:  # LeaseLost: queued already by someone else meanwhile
            if isinstance(outcome, BaseException) and not isinstance(outcome, LeaseLost):
                raise outcome
        count += sum(not isinstance(o, BaseException) for o in outcomes)
    more = bool(await store.outbox(status="dead", sink=sink, since=since, until=until, limit=1, after=last))
    return Replayed(count, more)
